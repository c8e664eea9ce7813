/**
 * `--plugin FILE` (trace, compare, migrate): loads a module that adds
 * dirty-tracking modes or stop policies before the command parses its other
 * flags. A plugin module either
 *  - exports a default function, called with the registration API
 *    (`export default function (memvisor) { memvisor.registerMode({...}) }`):
 *    it registers into the running memvisor whichever copy of the package it
 *    was written against; or
 *  - calls registerMode / registerPolicy itself when imported (`import
 *    { registerMode } from 'memvisor'`), which reaches this process's registry
 *    only when 'memvisor' resolves to the same copy of the package.
 * Either way a plugin that registered nothing is refused, so a silent no-op
 * (the second form against another copy) cannot pass for a loaded mode.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { policyNames, registerPolicy, type PolicyEntry } from '../core/migration/policy/registry.ts';
import { modeNames, registerMode, type ModeEntry } from '../core/modes/registry.ts';
import { UsageError } from './errors.ts';

/** What a plugin's default export is called with. */
export interface PluginApi {
  registerMode(entry: ModeEntry): void;
  registerPolicy(entry: PolicyEntry): void;
}

/** A plugin module's default export. */
export type MemvisorPlugin = (api: PluginApi) => void | Promise<void>;

const API: PluginApi = { registerMode, registerPolicy };

/** Plugin files already loaded into this thread's registries (a worker thread has its own). */
const loaded = new Set<string>();

/**
 * Loads each file in order (paths relative to the working directory), once
 * per thread: compare's worker threads load the same files before their
 * first task, and a file this thread already loaded is not loaded again.
 */
export async function loadPlugins(files: readonly string[]): Promise<void> {
  for (const file of files) await loadPlugin(file);
}

async function loadPlugin(file: string): Promise<void> {
  const path = resolve(file);
  if (loaded.has(path)) return;
  if (!existsSync(path)) throw new UsageError(`--plugin: ${file}: no such file`);
  const before = modeNames().length + policyNames().length;
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (e) {
    throw new UsageError(`--plugin: ${file}: could not load it: ${firstLine(e)}`);
  }
  if (typeof mod.default === 'function') {
    try {
      await (mod.default as MemvisorPlugin)(API);
    } catch (e) {
      throw new UsageError(`--plugin: ${file}: its default export failed: ${firstLine(e)}`);
    }
  }
  loaded.add(path);
  if (modeNames().length + policyNames().length === before) {
    throw new UsageError(`--plugin: ${file} registered no mode or policy (export a default function (memvisor) => memvisor.registerMode({...}))`);
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

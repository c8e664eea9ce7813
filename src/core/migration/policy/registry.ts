/**
 * Stop policies by the names the CLI uses (`--policy`): the built-in ones,
 * and those a user adds with registerPolicy (a `--plugin` module, or a
 * program using the package).
 */
import { adaptivePolicy } from './adaptive.ts';
import { clarkPolicy } from './clark.ts';
import { qemuPolicy } from './qemu.ts';
import type { StopPolicy } from './stop-policy.ts';
import { xenLegacyPolicy } from './xen-legacy.ts';
import { xenPolicy } from './xen.ts';

/** The built-in policies. */
export const POLICY_NAMES = ['xen', 'xen-legacy', 'qemu', 'clark', 'adaptive'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export interface PolicyOptions {
  /** qemu / adaptive: the downtime target, ms (default 300). */
  readonly downtimeLimitMs?: number;
}

/** A stop policy as the registry knows a registered one. */
export interface PolicyEntry {
  /** Name on the command line (`--policy`): lower-case letters, digits and dashes. */
  readonly name: string;
  /** A fresh policy for one migration (policies may keep per-migration state); its `name` should be this entry's. */
  readonly create: (opts: PolicyOptions) => StopPolicy;
  /** One line for --help and the README. */
  readonly summary?: string;
}

/** A name no built-in or registered policy has. */
export class UnknownPolicyError extends Error {
  readonly userFacing = true;
  constructor(name: string) {
    super(`unknown stop policy "${name}" (known: ${policyNames().join(', ')})`);
    this.name = 'UnknownPolicyError';
  }
}

/** A registration refused (bad name, name taken, no factory): user-facing. */
export class PolicyRegistrationError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'PolicyRegistrationError';
  }
}

const registered = new Map<string, PolicyEntry>();

/**
 * Adds a stop policy under `entry.name`, usable as `--policy NAME` and by
 * createPolicy. Built-in names cannot be replaced; registering the same entry
 * again is a no-op.
 */
export function registerPolicy(entry: PolicyEntry): void {
  const name = entry?.name;
  if (typeof name !== 'string' || !/^[a-z][a-z0-9-]{0,39}$/.test(name)) {
    throw new PolicyRegistrationError(`registerPolicy: policy name ${JSON.stringify(name)} must be lower-case letters, digits and dashes, starting with a letter (at most 40)`);
  }
  if (typeof entry.create !== 'function') throw new PolicyRegistrationError(`registerPolicy: policy '${name}' has no create(options) factory`);
  const known = registered.get(name);
  if (known === entry) return;
  if (known !== undefined || (POLICY_NAMES as readonly string[]).includes(name)) {
    throw new PolicyRegistrationError(`registerPolicy: a policy named '${name}' is already ${known ? 'registered' : 'built in'}`);
  }
  registered.set(name, entry);
}

/** Every policy name: the built-in ones, then the registered ones in registration order. */
export function policyNames(): string[] {
  return [...POLICY_NAMES, ...registered.keys()];
}

/** A fresh policy object (policies may keep per-migration state). */
export function createPolicy(name: string, opts: PolicyOptions = {}): StopPolicy {
  const entry = registered.get(name);
  if (entry !== undefined) return entry.create(opts);
  switch (name) {
    case 'xen':
      return xenPolicy();
    case 'xen-legacy':
      return xenLegacyPolicy();
    case 'qemu':
      return qemuPolicy({ downtimeLimitMs: opts.downtimeLimitMs });
    case 'clark':
      return clarkPolicy();
    case 'adaptive':
      return adaptivePolicy({ downtimeLimitMs: opts.downtimeLimitMs });
    default:
      throw new UnknownPolicyError(name);
  }
}

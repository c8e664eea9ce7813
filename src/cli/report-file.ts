/**
 * `--report FILE.html` for every command that has it: the path is checked
 * before the work starts (opened for appending, so an existing report is not
 * touched), so a path that cannot be written fails in a moment rather than
 * after a long run; the report is written once the command's own output has
 * been printed. If the command fails, a file the check created is removed
 * again (reportAndExit calls `abandonReportClaims`), and an existing one is
 * left as it was.
 */
import { closeSync, existsSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { UsageError } from './errors.ts';

/** Paths this process created empty while checking them. */
const created = new Set<string>();

function cannotWrite(path: string, e: unknown): UsageError {
  return new UsageError(`--report: cannot write '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
}

/** Checks now that the report can be written; throws a UsageError naming the path if not. */
export function claimReportFile(path: string | undefined): void {
  if (path === undefined) return;
  const existed = existsSync(path);
  try {
    closeSync(openSync(path, 'a'));
  } catch (e) {
    throw cannotWrite(path, e);
  }
  if (!existed) created.add(path);
}

/** Writes the report; throws a UsageError naming the path if it cannot. */
export function writeReportFile(path: string, html: string): void {
  try {
    writeFileSync(path, html);
  } catch (e) {
    throw cannotWrite(path, e);
  }
  created.delete(path);
}

/** The command failed: remove the empty files the checks created. */
export function abandonReportClaims(): void {
  for (const path of created) rmSync(path, { force: true });
  created.clear();
}

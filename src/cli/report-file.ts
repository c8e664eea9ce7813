/**
 * `--report FILE.html` for every command that has it: the file is claimed
 * (created empty) before the work starts, so a path that cannot be written
 * fails in a moment rather than after a long run, and written once the
 * command's own output has been printed, so nothing done is lost if the
 * disk fails in between.
 */
import { writeFileSync } from 'node:fs';
import { UsageError } from './errors.ts';

function write(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (e) {
    throw new UsageError(`--report: cannot write '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Creates (or empties) the report file now; throws a UsageError naming the path if it cannot. */
export function claimReportFile(path: string | undefined): void {
  if (path !== undefined) write(path, '');
}

/** Writes the report; throws a UsageError naming the path if it cannot. */
export function writeReportFile(path: string, html: string): void {
  write(path, html);
}

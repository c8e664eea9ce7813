/**
 * How the e2e tests start the CLI: `node` with the TypeScript loader on
 * src/cli/main.ts — the sources under test, never dist/, which in a checkout
 * may be older than the sources (bin/memvisor.js runs dist/). The compiled
 * package itself is tested by package.test.ts, which builds it afresh
 * (`npm pack` runs prepack) and installs the tarball in an empty project.
 * The `memvisor-source` condition makes `import 'memvisor'` in a plugin
 * resolve to the same sources (package.json exports), as in scripts/test.sh.
 */
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');

/** Arguments before the command: spawn(process.execPath, [...CLI, 'trace', ...]). */
export const CLI: readonly string[] = ['--conditions=memvisor-source', '--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];

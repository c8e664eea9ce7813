/** The README's "Use as a library" example: the first ```js block under that heading. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli-entry.ts';

export function readmeLibraryExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('## Use as a library');
  if (at < 0) throw new Error('README has no "## Use as a library" section');
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  if (m === null) throw new Error('README\'s "Use as a library" section has no ```js block');
  return m[1]!;
}

#!/usr/bin/env node
// Entry point: runs the compiled CLI (dist/, built by `npm run build`; `npm ci`
// and `npm pack` build it through the prepare/prepack scripts). No TypeScript
// loader at start-up. In a checkout (src/ beside dist/), a dist older than the
// sources is named on stderr, so an edit is never run stale without a word.
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const main = new URL('dist/cli/main.js', root);
if (!existsSync(main)) {
  process.stderr.write('memvisor: dist/ is not built; run `npm run build` (npm ci runs it) in the memvisor checkout\n');
  process.exit(2);
}
const src = new URL('src/', root);
if (existsSync(src)) {
  const built = statSync(new URL('dist/.tsbuildinfo', root), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const newer = readdirSync(src, { recursive: true }).find((f) => String(f).endsWith('.ts') && !String(f).endsWith('.test.ts') && statSync(new URL(String(f), src)).mtimeMs > built);
  if (newer !== undefined) process.stderr.write(`memvisor: warning: src/${newer} is newer than dist/; run \`npm run build\` to use your changes\n`);
}
await import(main.href);

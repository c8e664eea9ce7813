import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { IoWatchdog, type ExpiryReason } from './io-watchdog.ts';

/** A watchdog on a hand-moved clock; `check()` is called directly, as the timer would. */
function rig(o: { timeoutMs: number; minBytesPerSec?: number; waiting?: () => boolean }) {
  let t = 1000;
  const fired: { reason: ExpiryReason; bytes: number; at: number }[] = [];
  const w = new IoWatchdog({
    timeoutMs: o.timeoutMs,
    ...(o.minBytesPerSec !== undefined ? { minBytesPerSec: o.minBytesPerSec } : {}),
    ...(o.waiting ? { isWaiting: o.waiting } : {}),
    onExpire: (reason, bytes) => fired.push({ reason, bytes, at: t }),
    now: () => t,
  });
  return { w, fired, advance: (ms: number) => { t += ms; w.check(); } };
}

test('silent: fires once no progress has been seen for the timeout, not a moment before', () => {
  const { w, fired, advance } = rig({ timeoutMs: 3000 });
  advance(2999);
  assert.equal(fired.length, 0);
  w.progress(10);
  advance(2999);
  assert.equal(fired.length, 0, 'progress restarted the count');
  advance(1);
  assert.deepEqual(fired.map((f) => f.reason), ['silent']);
  advance(10_000);
  assert.equal(fired.length, 1, 'fires once, then stops');
});

test('only time spent waiting on the link counts', () => {
  let waiting = false;
  const { fired, advance } = rig({ timeoutMs: 3000, waiting: () => waiting });
  advance(60_000); // the sender computing, the guest running: not a stall
  assert.equal(fired.length, 0);
  waiting = true;
  advance(2000);
  assert.equal(fired.length, 0, 'the count starts when waiting starts');
  advance(1000);
  assert.equal(fired.length, 1);
});

test('slow: a window carrying less than the minimum rate fires; one carrying enough does not', () => {
  const { w, fired, advance } = rig({ timeoutMs: 3000, minBytesPerSec: 1024 });
  // A byte every second: never silent for 3 s, far below 1 KiB/s.
  for (let i = 0; i < 3; i++) {
    w.progress(1);
    advance(1000);
  }
  assert.deepEqual(fired, [{ reason: 'slow', bytes: 3, at: 4000 }]);

  const ok = rig({ timeoutMs: 3000, minBytesPerSec: 1024 });
  for (let i = 0; i < 30; i++) {
    ok.w.progress(1100);
    ok.advance(1000);
  }
  assert.equal(ok.fired.length, 0, '1100 bytes/s is above the minimum');
});

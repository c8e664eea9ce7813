/**
 * createGuest under paged addressing: the guest OS model maps what the
 * workload touches, and a guest whose OS has no frame left dies saying so.
 * (The soak's shadow seed 100006 hit this after the savers merge as
 * "npt exit 5 at gpa 0x0 not handled": its workload ranged over every frame,
 * leaving none for the OS's tables.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import { guestOsMappablePages } from '../workload/guest-os.ts';
import { createGuest } from './guest.ts';

const PAGE = 4096;

/** One load from each of pages [0, n), in order. */
function touchPages(n: number): AccessBatch {
  const b = new AccessBatch(n);
  for (let i = 0; i < n; i++) {
    b.kind[i] = AccessKind.Load;
    b.addr[i] = i * PAGE;
    b.size[i] = 8;
    b.line[i] = i + 1;
  }
  b.length = n;
  return b;
}

describe('createGuest, paged addressing', () => {
  for (const mode of ['shadow', 'ept-wp', null] as const) {
    const frames = 16; // 64 KiB: a PML4, PDPT, PD and PT leave 12 frames for data
    it(`${mode ?? 'no mode'}: a workload over the pages the OS can map runs; one page more crashes the guest with the OS's reason`, () => {
      const fits = createGuest({ memBytes: frames * PAGE, vcpus: 1, mode, addressing: 'paged', pageSize: '4k' });
      const span = guestOsMappablePages(frames);
      assert.equal(span, 12);
      const ok = touchPages(span);
      assert.equal(fits.domain.run(ok), span, fits.domain.crashReason);
      assert.equal(fits.domain.crashed, false);
      assert.equal(fits.os!.mappedPages, span);

      const over = createGuest({ memBytes: frames * PAGE, vcpus: 1, mode, addressing: 'paged', pageSize: '4k' });
      const batch = touchPages(span + 1);
      assert.equal(over.domain.run(batch), span, 'the access past the last free frame does not complete');
      assert.equal(over.domain.crashed, true);
      assert.match(over.domain.crashReason, /^vCPU 0: guest OS out of frames mapping gva 0xc000 \(12 pages mapped, 4 table frames, 0 free\)$/);
    });
  }
});

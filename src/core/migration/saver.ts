/**
 * What each saver sends: its loop and its page rules. A stop policy says when
 * to stop; the saver it belongs to says which pages a pass puts on the wire
 * and how. Each built-in policy carries the spec of the real saver it comes
 * from (registry.ts); a plugin policy without one gets Xen's v2 rules.
 *
 *   saver        loop   zero pages   re-dirtied   unchanged (hash)   final CLEAN
 *   xen          xen    with data    sent         sent               LOGDIRTY_FINAL
 *   xen-legacy   xen    with data    skipped      sent               plain
 *   clark        xen    with data    skipped      sent               plain
 *   qemu         qemu   ZERO flag    sent         sent               (a bitmap sync)
 *   adaptive     xen    ZERO flag    sent         skipped            LOGDIRTY_FINAL
 *
 * Sources:
 *  - xen: tools/libs/guest/xg_sr_save.c `send_memory_live` sends every pfn set
 *    in the CLEANed bitmap; `write_batch` drops data only for page types
 *    without any (`page_type_has_stream_data`: XTAB, XALLOC, BROKEN), never
 *    for a zero page; `suspend_and_send_dirty` CLEANs with
 *    XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL.
 *  - xen-legacy: tools/libxc/xc_domain_save.c (git b15bc43^) PEEKs the log
 *    into `to_skip` before each batch of up to MAX_BATCH_SIZE (1024) pages and
 *    skips a page that is in `to_send` and in `to_skip` (counted in
 *    `skip_this_iter`), except in the last iteration; no zero detection; its
 *    last CLEAN predates the FINAL flag (added in 2015, after b15bc43).
 *  - clark: Clark et al., NSDI'05 §5.4 — "peek" at the current round's
 *    bitmap and send only pages not dirtied again; their Xen 2 saver is the
 *    ancestor of xc_domain_save, so the same rule.
 *  - qemu: migration/ram.c (v7.2.0) `save_zero_page` sends a zero page as
 *    RAM_SAVE_FLAG_ZERO with no payload; a re-dirtied page is sent again
 *    (XBZRLE, the only content-based reduction, is off by default).
 *  - adaptive: ours; the content-hash skip (a page whose hash equals its hash
 *    at its last send is not resent) is on by default only here.
 * `--skip-unchanged` turns the content-hash skip on for any saver.
 */

export type SaverLoop = 'xen' | 'qemu';

export interface SaverSpec {
  /** Which loop drives the passes: Xen's send_memory_live, or QEMU's migration thread (qemu-thread.ts). */
  readonly loop: SaverLoop;
  /** A zero page: sent with its 4096 bytes ('data') or as a ZERO descriptor with no payload ('flag'). */
  readonly zeroPages: 'data' | 'flag';
  /** PEEK before each batch and skip pages dirtied again since the pass began (not in the final pass). */
  readonly skipRedirtied: boolean;
  /** The content-hash skip, by default (the sender's `skipUnchanged` option overrides it). */
  readonly skipUnchanged: boolean;
  /** The stop-and-copy CLEAN carries XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL. */
  readonly finalCleanFlag: boolean;
}

export const XEN_SAVER: SaverSpec = { loop: 'xen', zeroPages: 'data', skipRedirtied: false, skipUnchanged: false, finalCleanFlag: true };
export const XEN_LEGACY_SAVER: SaverSpec = { loop: 'xen', zeroPages: 'data', skipRedirtied: true, skipUnchanged: false, finalCleanFlag: false };
export const CLARK_SAVER: SaverSpec = XEN_LEGACY_SAVER;
export const QEMU_SAVER: SaverSpec = { loop: 'qemu', zeroPages: 'flag', skipRedirtied: false, skipUnchanged: false, finalCleanFlag: false };
export const ADAPTIVE_SAVER: SaverSpec = { loop: 'xen', zeroPages: 'flag', skipRedirtied: false, skipUnchanged: true, finalCleanFlag: true };

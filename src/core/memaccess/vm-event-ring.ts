/**
 * The shared vm_event ring (xen/include/public/io/ring.h), over one 4 KiB page
 * of bytes both ends see. Xen is the *front* end of the monitor ring (it
 * produces requests and consumes responses); the listener is the *back* end.
 * Each end keeps its private indices (front: req_prod_pvt, rsp_cons; back:
 * req_cons, rsp_prod_pvt) outside the page and publishes through the header.
 * Layout and codec: vm-event-abi.ts.
 *
 * Who writes what in the page: req_prod and the request slots — the front
 * (RING_PUSH_REQUESTS); rsp_prod and response slots — the back
 * (RING_PUSH_RESPONSES); req_event — the back (after consuming); rsp_event —
 * the front (after consuming). Requests and responses share slots: a slot is
 * free for a new request once its response was consumed (RING_FREE_REQUESTS).
 *
 * Indices are u32 and wrap; every difference is taken modulo 2^32.
 */
import {
  RING_PAGE_BYTES, RING_SIZE, SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD, type VmEvent,
  decodeEvent, encodeEvent, slotOffset,
} from './vm-event-abi.ts';

/** The shared page: bytes plus a little-endian view of them. */
export class SharedRingPage {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(bytes: Uint8Array = new Uint8Array(RING_PAGE_BYTES)) {
    if (bytes.length !== RING_PAGE_BYTES) throw new RangeError(`a vm_event ring page is ${RING_PAGE_BYTES} bytes, got ${bytes.length}`);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get reqProd(): number { return this.view.getUint32(SRING_REQ_PROD, true); }
  set reqProd(v: number) { this.view.setUint32(SRING_REQ_PROD, v >>> 0, true); }
  get reqEvent(): number { return this.view.getUint32(SRING_REQ_EVENT, true); }
  set reqEvent(v: number) { this.view.setUint32(SRING_REQ_EVENT, v >>> 0, true); }
  get rspProd(): number { return this.view.getUint32(SRING_RSP_PROD, true); }
  set rspProd(v: number) { this.view.setUint32(SRING_RSP_PROD, v >>> 0, true); }
  get rspEvent(): number { return this.view.getUint32(SRING_RSP_EVENT, true); }
  set rspEvent(v: number) { this.view.setUint32(SRING_RSP_EVENT, v >>> 0, true); }

  /** SHARED_RING_INIT: producers 0, event thresholds 1, the rest of the page zeroed. */
  init(): void {
    this.bytes.fill(0);
    this.reqEvent = 1;
    this.rspEvent = 1;
  }

  read(index: number): VmEvent {
    return decodeEvent(this.view, slotOffset(index));
  }

  write(index: number, e: VmEvent): void {
    encodeEvent(this.bytes, this.view, slotOffset(index), e);
  }
}

const u32 = (x: number): number => x >>> 0;

/** FRONT_RING: Xen's end (produces requests, consumes responses). */
export class FrontRing {
  reqProdPvt = 0;
  rspCons = 0;

  /** FRONT_RING_INIT (Xen does not re-initialise the shared header: the listener did, SHARED_RING_INIT). */
  constructor(readonly page: SharedRingPage) {}

  /** RING_FREE_REQUESTS: slots neither holding an unconsumed request nor an unconsumed response. */
  freeRequests(): number {
    return RING_SIZE - u32(this.reqProdPvt - this.rspCons);
  }

  /** Copies a request into the next slot (not yet visible: call pushRequests). */
  produce(e: VmEvent): void {
    this.page.write(this.reqProdPvt, e);
    this.reqProdPvt = u32(this.reqProdPvt + 1);
  }

  /** RING_PUSH_REQUESTS. */
  pushRequests(): void {
    this.page.reqProd = this.reqProdPvt;
  }

  /**
   * RING_HAS_UNCONSUMED_RESPONSES, capped at the requests produced and not yet
   * answered: a listener cannot hand back slots it never held (Xen trusts
   * rsp_prod; a listener publishing more would corrupt its free-slot count).
   */
  unconsumedResponses(): number {
    const n = u32(this.page.rspProd - this.rspCons);
    const outstanding = u32(this.reqProdPvt - this.rspCons);
    return n < outstanding ? n : outstanding;
  }

  /** Reads the next response and consumes it (rsp_cons++, rsp_event = rsp_cons + 1), as vm_event_get_response does. */
  consumeResponse(): VmEvent {
    const e = this.page.read(this.rspCons);
    this.rspCons = u32(this.rspCons + 1);
    this.page.rspEvent = u32(this.rspCons + 1);
    return e;
  }
}

/** BACK_RING: the listener's end (consumes requests, produces responses). */
export class BackRing {
  reqCons = 0;
  rspProdPvt = 0;

  /** BACK_RING_INIT. */
  constructor(readonly page: SharedRingPage) {}

  /** RING_HAS_UNCONSUMED_REQUESTS: min(published - consumed, room left for responses). */
  unconsumedRequests(): number {
    const req = u32(this.page.reqProd - this.reqCons);
    const rsp = RING_SIZE - u32(this.reqCons - this.rspProdPvt);
    return req < rsp ? req : rsp;
  }

  /** xen-access get_request: copy, req_cons++, req_event = req_cons + 1. */
  consumeRequest(): VmEvent {
    const e = this.page.read(this.reqCons);
    this.reqCons = u32(this.reqCons + 1);
    this.page.reqEvent = u32(this.reqCons + 1);
    return e;
  }

  /** xen-access put_response: copy into the next response slot and RING_PUSH_RESPONSES. */
  produceResponse(e: VmEvent): void {
    this.page.write(this.rspProdPvt, e);
    this.rspProdPvt = u32(this.rspProdPvt + 1);
    this.page.rspProd = this.rspProdPvt;
  }
}

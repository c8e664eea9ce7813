/**
 * The heatmap as the dashboard serves it (GET /api/heatmap): one byte per
 * pixel, one pixel per guest page (or per `pagesPerPixel` consecutive pages
 * when the guest has more pages than MAX_HEATMAP_PIXELS), row-major in gfn
 * order. Little-endian header, then the pixels:
 *
 * ```
 *  0        4        6        8        12       16       20       24       28
 *  | magic  | ver    | flags  | round  | pages  | p/pix  | width  | height | age bytes (width × height) …
 *  | "MVHM" | u16 =1 | u16 =0 | u32    | u32    | u32    | u32    | u32    |
 * ```
 *
 * Age byte: 0 = never dirtied; 1 = dirtied in the latest round; k (2..254)
 * = last dirtied k − 1 rounds before it; 255 = 254 rounds ago or more.
 * A pixel covering several pages takes the most recent write among them.
 * Pixels past the last page are 0. The page (web/dashboard.js) colours the
 * bytes: latest / earlier / never, or a write-age gradient.
 */
import type { PageAges } from './page-ages.ts';

export const HEATMAP_MAGIC = 0x4d48564d; // "MVHM" read as a little-endian u32
export const HEATMAP_VERSION = 1;
export const HEATMAP_HEADER_BYTES = 28;
/** Beyond this many pages a pixel covers several (a 4 GiB guest is 1024 × 1024 pages). */
export const MAX_HEATMAP_PIXELS = 1 << 20;
export const AGE_NEVER = 0;
export const AGE_LATEST = 1;
export const AGE_OLDEST = 255;

export interface HeatmapGeometry {
  readonly pageCount: number;
  readonly pagesPerPixel: number;
  readonly width: number;
  readonly height: number;
}

/** Width a power of two near the square root (so rows start on round gfns), height what it takes. */
export function heatmapGeometry(pageCount: number, maxPixels = MAX_HEATMAP_PIXELS): HeatmapGeometry {
  const pagesPerPixel = Math.max(1, Math.ceil(pageCount / maxPixels));
  const pixels = Math.ceil(pageCount / pagesPerPixel);
  let width = 1;
  while (width * width < pixels) width *= 2;
  return { pageCount, pagesPerPixel, width, height: Math.max(1, Math.ceil(pixels / width)) };
}

/** Encodes the current ages into a fresh frame (header + one byte per pixel). */
export function encodeHeatmap(ages: PageAges, geo: HeatmapGeometry = heatmapGeometry(ages.pageCount)): Uint8Array {
  const pixels = geo.width * geo.height;
  const out = new Uint8Array(HEATMAP_HEADER_BYTES + pixels);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, HEATMAP_MAGIC, true);
  dv.setUint16(4, HEATMAP_VERSION, true);
  dv.setUint16(6, 0, true);
  dv.setUint32(8, ages.round, true);
  dv.setUint32(12, ages.pageCount, true);
  dv.setUint32(16, geo.pagesPerPixel, true);
  dv.setUint32(20, geo.width, true);
  dv.setUint32(24, geo.height, true);
  const last = ages.lastDirtyRound;
  const now = ages.round;
  const ppp = geo.pagesPerPixel;
  const n = ages.pageCount;
  for (let px = 0, gfn = 0; gfn < n; px++, gfn += ppp) {
    let newest = 0;
    const end = Math.min(n, gfn + ppp);
    for (let g = gfn; g < end; g++) if (last[g]! > newest) newest = last[g]!;
    out[HEATMAP_HEADER_BYTES + px] = newest === 0 ? AGE_NEVER : Math.min(AGE_OLDEST, now - newest + 1);
  }
  return out;
}

export interface DecodedHeatmap extends HeatmapGeometry {
  readonly round: number;
  readonly ages: Uint8Array;
}

/** A frame that is not a heatmap this code understands. */
export class HeatmapDecodeError extends Error {
  override readonly name = 'HeatmapDecodeError';
}

/** Decodes a frame (tests; web/dashboard.js mirrors it). */
export function decodeHeatmap(bytes: Uint8Array): DecodedHeatmap {
  if (bytes.length < HEATMAP_HEADER_BYTES) throw new HeatmapDecodeError(`heatmap frame too short: ${bytes.length} bytes`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== HEATMAP_MAGIC) throw new HeatmapDecodeError(`bad heatmap magic 0x${magic.toString(16)}`);
  const version = dv.getUint16(4, true);
  if (version !== HEATMAP_VERSION) throw new HeatmapDecodeError(`heatmap version ${version} not supported`);
  const width = dv.getUint32(20, true);
  const height = dv.getUint32(24, true);
  if (bytes.length !== HEATMAP_HEADER_BYTES + width * height) {
    throw new HeatmapDecodeError(`heatmap frame is ${bytes.length} bytes, header says ${HEATMAP_HEADER_BYTES + width * height}`);
  }
  return {
    round: dv.getUint32(8, true),
    pageCount: dv.getUint32(12, true),
    pagesPerPixel: dv.getUint32(16, true),
    width,
    height,
    ages: bytes.subarray(HEATMAP_HEADER_BYTES),
  };
}

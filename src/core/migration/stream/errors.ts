/**
 * Every way a migration stream can be refused, one class each. `offset` is
 * the byte offset in the stream where the fault was found, so a message
 * names the place ("checksum mismatch in PAGE_BATCH at byte 4202536").
 */

export abstract class StreamError extends Error {
  abstract readonly code: string;
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} (stream byte ${offset})`);
    this.name = new.target.name;
  }
}

export class BadMagicError extends StreamError {
  readonly code = 'bad_magic';
  constructor(found: number, offset: number) {
    super(`not a memvisor migration stream: magic 0x${(found >>> 0).toString(16)} instead of "MVMS"`, offset);
  }
}

export class UnsupportedVersionError extends StreamError {
  readonly code = 'unsupported_version';
  constructor(major: number, minor: number, supported: number, offset: number) {
    super(`stream version ${major}.${minor} is not supported (this receiver reads major ${supported})`, offset);
  }
}

export class BadRecordTypeError extends StreamError {
  readonly code = 'bad_record_type';
  constructor(type: number, offset: number) {
    super(`unknown mandatory record type 0x${(type >>> 0).toString(16)}`, offset);
  }
}

export class LengthTooLargeError extends StreamError {
  readonly code = 'length_too_large';
  constructor(what: string, length: number, max: number, offset: number) {
    super(`${what} record claims ${length} bytes, more than the ${max} allowed`, offset);
  }
}

/** A length that disagrees with the record's own fields (count, stateBytes, fixed size). */
export class BadRecordLengthError extends StreamError {
  readonly code = 'bad_record_length';
  constructor(what: string, length: number, expected: string, offset: number) {
    super(`${what} record length ${length} does not match its contents (expected ${expected})`, offset);
  }
}

export class ChecksumMismatchError extends StreamError {
  readonly code = 'checksum_mismatch';
  constructor(what: string, offset: number) {
    super(`checksum mismatch in ${what} record; the record was not applied`, offset);
  }
}

export class TruncatedStreamError extends StreamError {
  readonly code = 'truncated_stream';
  constructor(where: string, offset: number) {
    super(`stream ended early, ${where}`, offset);
  }
}

export class GfnOutOfRangeError extends StreamError {
  readonly code = 'gfn_out_of_range';
  constructor(gfn: number, pageCount: number, offset: number) {
    super(`page descriptor for gfn 0x${gfn.toString(16)} outside the guest's ${pageCount} pages`, offset);
  }
}

export class RecordOutOfOrderError extends StreamError {
  readonly code = 'record_out_of_order';
  constructor(what: string, after: string, offset: number) {
    super(`${what} record not allowed ${after}`, offset);
  }
}

export class BadPageFlagsError extends StreamError {
  readonly code = 'bad_page_flags';
  constructor(flags: number, offset: number) {
    super(`page descriptor flags 0x${flags.toString(16)}: need exactly one of ZERO, PAGE and no reserved bits`, offset);
  }
}

export class BadHeaderError extends StreamError {
  readonly code = 'bad_header';
  constructor(why: string, offset: number) {
    super(`bad HEADER record: ${why}`, offset);
  }
}

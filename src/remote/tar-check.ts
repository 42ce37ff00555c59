/**
 * Checks a tar stream (ustar, pax and GNU long-name headers) member by member as it passes
 * from the decompressor to the extracting tar, so an archive is decompressed once: a header is
 * checked before tar sees it, and a refused one never reaches tar. Accepted are regular files,
 * directories, symlinks and hard links whose names and link targets stay inside the directory
 * (never absolute, never `..`), up to `maxBytes` of file data in all. Refused is everything
 * else: devices, FIFOs, sparse or contiguous files, bad checksums, unknown header types,
 * oversized metadata, data after a lone zero block, and a stream cut off before its end.
 */
export class TarRefusal extends Error {}

const BLOCK = 512;
/** pax and GNU long-name records are names and a few numbers: more is not an archive of ours. */
const MAX_META = 1 << 20;

/** What pax (`x`) and GNU (`L`, `K`) records say of the next member; each is checked on its own. */
type Pending = { path?: string; linkpath?: string; longName?: string; longLink?: string; size?: number };

export class TarChecker {
  private head: Buffer[] = [];
  private headLength = 0;
  /** Bytes of the current member's data (and padding) still to pass. */
  private skip = 0;
  /** Collecting a pax or GNU long-name record of this type, into `meta`. */
  private collecting?: string;
  private meta: Buffer[] = [];
  private metaSize = 0;
  private pending: Pending = {};
  private zeroBlocks = 0;
  private ended = false;
  private total = 0;
  members = 0;

  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {}

  /** Whether the stream reached its end-of-archive marker (two zero blocks). */
  get complete(): boolean {
    return this.ended;
  }

  /**
   * Takes the next bytes of the decompressed stream and returns what may pass on to tar
   * (everything up to the end marker; nothing after it). Throws TarRefusal at a bad header.
   */
  push(chunk: Buffer): Buffer {
    if (this.ended) return chunk.subarray(0, 0);
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        if (this.collecting) this.collect(chunk.subarray(at, at + n));
        at += n;
        this.skip -= n;
        if (this.skip === 0 && this.collecting) this.finishMeta();
        continue;
      }
      const n = Math.min(BLOCK - this.headLength, chunk.length - at);
      this.head.push(chunk.subarray(at, at + n));
      this.headLength += n;
      at += n;
      if (this.headLength === BLOCK) {
        const block = Buffer.concat(this.head, BLOCK);
        this.head = [];
        this.headLength = 0;
        this.header(block);
        if (this.ended) return chunk.subarray(0, at);
      }
    }
    return chunk;
  }

  private collect(part: Buffer): void {
    this.meta.push(Buffer.from(part));
  }

  private header(block: Buffer): void {
    if (isZero(block)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) {
        if (Object.keys(this.pending).length > 0) throw new TarRefusal('it ends after a header that names nothing');
        this.ended = true;
      }
      return;
    }
    if (this.zeroBlocks > 0) throw new TarRefusal('it goes on after a lone zero block');
    if (!checksumOk(block)) throw new TarRefusal(`a header's checksum is wrong (at member ${this.members + 1})`);
    const type = String.fromCharCode(block[156]);
    const size = numeric(block, 124, 12);
    if (size === undefined) throw new TarRefusal(`a header's size is not a number (at member ${this.members + 1})`);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META) throw new TarRefusal(`a ${type} header of ${size} bytes`);
      this.collecting = type;
      this.meta = [];
      this.metaSize = size;
      this.skip = padded(size);
      if (size === 0) this.finishMeta();
      return;
    }
    const ustar = block.toString('latin1', 257, 263) === 'ustar\0';
    const field = cString(block, 0, 100);
    const prefix = ustar ? cString(block, 345, 155) : '';
    const pending = this.pending;
    this.pending = {};
    // Every name tar could take for the member is checked, whichever it prefers.
    const names = [pending.path, pending.longName, prefix ? `${prefix}/${field}` : field, field].filter(
      (each): each is string => each !== undefined,
    );
    const links = [pending.linkpath, pending.longLink, cString(block, 157, 100)].filter(
      (each): each is string => each !== undefined,
    );
    const name = names[0];
    const dataSize = pending.size ?? size;
    this.members++;
    const shownName = JSON.stringify(name);
    for (const each of names)
      if ((each === '' && names.length === 1) || escapes(each))
        throw new TarRefusal(`member ${JSON.stringify(each)} is absolute or climbs out`);
    if (type === '0' || type === '\0') {
      this.total += dataSize;
      if (this.total > this.maxBytes)
        throw new TarRefusal(`it holds more than ${this.maxBytes} bytes (remote-max-size)`);
      this.skip = padded(dataSize);
      return;
    }
    if (type === '5' || type === '2' || type === '1') {
      if (dataSize !== 0) throw new TarRefusal(`member ${shownName} (type ${type}) carries data`);
      if (type === '5') return;
      const what = type === '2' ? 'symlink' : 'hard link';
      for (const link of links)
        if ((link === '' && links.length === 1) || escapes(link))
          throw new TarRefusal(`${what} ${shownName} points to ${JSON.stringify(link)}`);
      return;
    }
    throw new TarRefusal(`member ${shownName} is ${KINDS[type] ?? `of header type ${JSON.stringify(type)}`}`);
  }

  private finishMeta(): void {
    const type = this.collecting as string;
    const data = Buffer.concat(this.meta).subarray(0, this.metaSize);
    this.collecting = undefined;
    this.meta = [];
    if (type === 'L') this.pending.longName = cString(data, 0, data.length);
    else if (type === 'K') this.pending.longLink = cString(data, 0, data.length);
    else {
      const records = paxRecords(data);
      if (type === 'g') {
        // Global records apply to every later member: nothing that renames or resizes one.
        for (const key of records.keys())
          if (key === 'path' || key === 'linkpath' || key === 'size' || key.startsWith('GNU.sparse'))
            throw new TarRefusal(`a global header sets ${key}`);
        return;
      }
      for (const [key, value] of records) {
        if (key === 'path') this.pending.path = value;
        else if (key === 'linkpath') this.pending.linkpath = value;
        else if (key === 'size') {
          if (!/^\d+$/.test(value)) throw new TarRefusal(`a pax size ${JSON.stringify(value)}`);
          this.pending.size = Number(value);
        } else if (key.startsWith('GNU.sparse')) throw new TarRefusal('a sparse file');
      }
    }
  }
}

const KINDS: Record<string, string> = {
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a FIFO',
  '7': 'a contiguous file',
  S: 'a sparse file',
  D: 'a dump directory',
  M: 'a multi-volume continuation',
  V: 'a volume label',
};

function escapes(name: string): boolean {
  return name.startsWith('/') || name.split('/').includes('..');
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** A NUL-terminated field, as tar reads it (bytes as Latin-1: `/` and `.` are what matter). */
function cString(buffer: Buffer, start: number, length: number): string {
  const end = buffer.indexOf(0, start);
  return buffer.toString('latin1', start, end < 0 || end > start + length ? start + length : end);
}

/** An octal field, or GNU's base-256 form (high bit set); undefined when neither. */
function numeric(block: Buffer, start: number, length: number): number | undefined {
  if (block[start] & 0x80) {
    if (block[start] !== 0x80) return undefined; // negative, or beyond what a file holds
    let value = 0;
    for (let i = start + 1; i < start + length; i++) value = value * 256 + block[i];
    return Number.isSafeInteger(value) ? value : undefined;
  }
  const text = block
    .toString('latin1', start, start + length)
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : undefined;
}

function checksumOk(block: Buffer): boolean {
  const stored = numeric(block, 148, 8);
  if (stored === undefined) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** pax records: `LENGTH KEY=VALUE\n`, LENGTH counting the whole record in bytes. */
function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break;
    const space = data.indexOf(0x20, at);
    const length = space < 0 ? NaN : Number(data.toString('latin1', at, space));
    if (!Number.isSafeInteger(length) || length <= 0 || at + length > data.length || data[at + length - 1] !== 0x0a)
      throw new TarRefusal('a pax header is malformed');
    const record = data.toString('utf8', space + 1, at + length - 1);
    const equals = record.indexOf('=');
    if (equals <= 0) throw new TarRefusal('a pax header is malformed');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    at += length;
  }
  return records;
}

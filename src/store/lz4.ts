/**
 * The chunk codec of chunked siblings: LZ4 block compression and CRC-32 checksums.
 *
 * Contract:
 * - compress() returns LZ4 *block* format (no frame, no length prefix: the caller stores the
 *   raw length, see the map entries of STORE-FORMAT.md), or null when the data does not
 *   shrink by at least 1/16; such chunks are stored raw.
 * - decompress() accepts untrusted bytes: it only uses the bounds-checked decoder
 *   (LZ4_decompress_safe: never reads past the input nor writes past the output) and
 *   requires the output to be exactly `rawLen` bytes long. Anything else is a SiblingError
 *   with code 'EIO'. Callers verify the stored checksum *before* decompressing, so corrupt
 *   data normally never reaches the decoder at all.
 * - checksum() is CRC-32 (zlib's polynomial, as `zlib.crc32`, Node >= 20.15).
 * Does not: frame, stream, or know where chunks live (that is src/store/chunks.ts).
 */
import zlib from 'node:zlib'
import { SiblingError } from '../errors.js'

/** The part of the `lz4` package (node-lz4 0.6, native binding of liblz4) that we use. */
interface Lz4Binding {
  /** LZ4_compress_default(input -> output); returns the compressed length, 0 when it does not fit in output. */
  encodeBlock (input: Buffer, output: Buffer): number
  /** LZ4_decompress_safe(input -> output); returns the decoded length, negative on malformed input. */
  decodeBlock (input: Buffer, output: Buffer): number
  /** LZ4_compressBound(n). */
  encodeBound (n: number): number
}

// The package ships no typings; only its 2-argument forms are used: the 3/4-argument forms take
// start/end indexes that the binding subtracts unchecked (an underflow would be an overread).
const lz4 = require('lz4') as Lz4Binding

/** Data shorter than this is never worth compressing. */
const MIN_COMPRESS = 64

/** The most compressed bytes compress() will accept for `n` raw bytes: at least 1/16 smaller. */
export function compressLimit (n: number): number {
  return n - Math.ceil(n / 16)
}

/**
 * Compresses `raw` into `out` (hot path: no allocation). Returns the compressed length, or 0
 * when it would not be at least 1/16 smaller than `raw` (then store `raw` as it is).
 * Only the first compressLimit(raw.length) bytes of `out` are used; `out` may be longer.
 */
export function compressInto (raw: Buffer, out: Buffer): number {
  if (raw.length < MIN_COMPRESS) return 0
  const limit = Math.min(compressLimit(raw.length), out.length)
  // LZ4 stops (returns 0) as soon as the output would not fit in `limit` bytes.
  const n = lz4.encodeBlock(raw, out.subarray(0, limit))
  return n > 0 && n <= limit ? n : 0
}

/** `raw` compressed (LZ4 block), or null when that would not shrink it by at least 1/16. */
export function compress (raw: Buffer): Buffer | null {
  if (raw.length < MIN_COMPRESS) return null
  const out = Buffer.allocUnsafe(compressLimit(raw.length))
  const n = compressInto(raw, out)
  return n === 0 ? null : Buffer.from(out.subarray(0, n))
}

function malformed (why: string): SiblingError {
  return new SiblingError('EIO', `malformed lz4 data: ${why}`)
}

/**
 * Decompresses `stored` into exactly `out.length` bytes of `out` (hot path: no allocation).
 * Throws SiblingError 'EIO' unless `stored` decodes to exactly that many bytes.
 */
export function decompressInto (stored: Buffer, out: Buffer): void {
  if (stored.length === 0) throw malformed('no input')
  if (out.length === 0) throw malformed('expected no output')
  let n: number
  try {
    n = lz4.decodeBlock(stored, out)
  } catch (err) {
    throw new SiblingError('EIO', 'malformed lz4 data: the decoder refused it', { cause: err })
  }
  if (n < 0) throw malformed(`invalid sequence near input byte ${-n}`)
  if (n !== out.length) throw malformed(`decodes to ${n} bytes, expected ${out.length}`)
}

/** `stored` (an LZ4 block) decompressed to exactly `rawLen` bytes; SiblingError 'EIO' otherwise. */
export function decompress (stored: Buffer, rawLen: number): Buffer {
  if (!Number.isSafeInteger(rawLen) || rawLen <= 0 || rawLen > 0x7fffffff) {
    throw malformed(`impossible raw length ${rawLen}`)
  }
  // LZ4's best case is ~255:1; a claim beyond that is corrupt, not worth allocating for.
  if (rawLen > stored.length * 256 + 16) throw malformed(`${stored.length} bytes cannot decode to ${rawLen}`)
  const out = Buffer.allocUnsafe(rawLen)
  decompressInto(stored, out)
  return out
}

/** CRC-32 of `buf` (unsigned 32-bit). */
export function checksum (buf: Buffer | Uint8Array): number {
  return zlib.crc32(buf) >>> 0
}

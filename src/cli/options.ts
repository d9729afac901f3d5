/**
 * Flags shared by several commands.
 */
import type { Argv } from 'yargs'
import type { CacheOptions } from '../fuse/mount.js'
import type { RequestedOptions } from '../store/format.js'

/**
 * Default seconds of the kernel's name and attribute caches. They bound only how late a
 * change made to the host directly (not through the mount) is seen: the sandbox's own
 * changes reach every cached name at once (hard links included, see overlay.ts KernelCache).
 */
export const DEFAULT_TIMEOUT = 60

/**
 * Default microseconds a FUSE thread waits awake for the daemon's answer (and the daemon,
 * twice as long, for the next request) before sleeping (see fuse-native.c,
 * sfs_await_answer). Off: it makes a stream of requests answered in JavaScript ~3x faster,
 * but the full benchmark showed no consistent gain on its rows (few requests reach
 * JavaScript now) for the CPU it burns while waiting.
 */
export const DEFAULT_SPIN_WAIT = 0

export interface CacheArgs {
  'attr-timeout': number
  'entry-timeout': number
  'negative-timeout': number
  'data-cache': 'auto' | 'keep' | 'none'
  'spin-wait': number
}

export function withCacheOptions<T> (y: Argv<T>): Argv<T & CacheArgs> {
  return y
    .option('attr-timeout', { type: 'number', default: DEFAULT_TIMEOUT, describe: 'seconds the kernel may cache attributes: how late a change made to the host directly may be seen (see "Coherence" in the README)' })
    .option('entry-timeout', { type: 'number', default: DEFAULT_TIMEOUT, describe: 'seconds the kernel may cache names' })
    .option('negative-timeout', { type: 'number', default: DEFAULT_TIMEOUT, describe: 'seconds the kernel may cache "no such file"' })
    .option('data-cache', { choices: ['auto', 'keep', 'none'] as const, default: 'auto' as const, describe: 'file data in the page cache: auto (until mtime/size change), keep, none' })
    .option('spin-wait', { type: 'number', default: DEFAULT_SPIN_WAIT, describe: 'microseconds a FUSE thread waits awake for the daemon\'s answer, and the daemon twice that for the next request, before sleeping (0, the default: sleep at once; 100: requests answered in JavaScript ~3x faster, more CPU)' })
    .check((a) => {
      for (const k of ['attr-timeout', 'entry-timeout', 'negative-timeout'] as const) {
        const v = (a as unknown as CacheArgs)[k]
        if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} must be a number of seconds >= 0`)
      }
      const sw = (a as unknown as CacheArgs)['spin-wait']
      if (!Number.isInteger(sw) || sw < 0 || sw > 10000) throw new Error('--spin-wait must be a whole number of microseconds from 0 to 10000')
      return true
    }) as unknown as Argv<T & CacheArgs>
}

export function cacheOptions (a: CacheArgs): CacheOptions {
  return { attrTimeout: a['attr-timeout'], entryTimeout: a['entry-timeout'], negativeTimeout: a['negative-timeout'], dataCache: a['data-cache'], spinWait: a['spin-wait'] }
}

export interface StoreArgs {
  'chunk-size'?: number
  compress?: 'none' | 'lz4'
  'cache-size': number
}

/** Options of the store (fixed at creation) and of its chunk cache. */
export function withStoreOptions<T> (y: Argv<T>): Argv<T & StoreArgs> {
  return y
    .option('compress', { choices: ['none', 'lz4'] as const, describe: 'new store only: compress stored chunks with lz4 (default none)' })
    .option('chunk-size', { type: 'number', describe: 'new store only: bytes per chunk of a sparse sibling, a power of two from 4096 to 16777216 (default 65536)' })
    .option('cache-size', { type: 'number', default: 64, describe: 'MiB of decompressed chunks kept in memory' })
    .check((a) => {
      const cs = (a as unknown as StoreArgs)['chunk-size']
      if (cs !== undefined && (!Number.isInteger(cs) || cs < 4096 || cs > 16777216 || (cs & (cs - 1)) !== 0)) {
        throw new Error('--chunk-size must be a power of two from 4096 to 16777216')
      }
      const c = (a as unknown as StoreArgs)['cache-size']
      if (!Number.isFinite(c) || c < 1) throw new Error('--cache-size must be at least 1 (MiB)')
      return true
    }) as unknown as Argv<T & StoreArgs>
}

export function storeOptions (a: StoreArgs): { want: RequestedOptions, cacheBytes: number } {
  const want: RequestedOptions = {}
  if (a['chunk-size'] !== undefined) want.chunkSize = a['chunk-size']
  if (a.compress !== undefined) want.compress = a.compress
  return { want, cacheBytes: Math.floor(a['cache-size'] * 1048576) }
}

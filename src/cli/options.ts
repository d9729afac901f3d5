/**
 * Flags shared by several commands.
 */
import type { Argv } from 'yargs'
import type { CacheOptions } from '../fuse/mount.js'

export interface CacheArgs {
  'attr-timeout': number
  'entry-timeout': number
  'negative-timeout': number
  'data-cache': 'auto' | 'keep' | 'none'
}

export function withCacheOptions<T> (y: Argv<T>): Argv<T & CacheArgs> {
  return y
    .option('attr-timeout', { type: 'number', default: 1, describe: 'seconds the kernel may cache attributes (see "Coherence" in the README)' })
    .option('entry-timeout', { type: 'number', default: 1, describe: 'seconds the kernel may cache names' })
    .option('negative-timeout', { type: 'number', default: 1, describe: 'seconds the kernel may cache "no such file"' })
    .option('data-cache', { choices: ['auto', 'keep', 'none'] as const, default: 'auto' as const, describe: 'file data in the page cache: auto (until mtime/size change), keep, none' })
    .check((a) => {
      for (const k of ['attr-timeout', 'entry-timeout', 'negative-timeout'] as const) {
        const v = (a as unknown as CacheArgs)[k]
        if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} must be a number of seconds >= 0`)
      }
      return true
    }) as unknown as Argv<T & CacheArgs>
}

export function cacheOptions (a: CacheArgs): CacheOptions {
  return { attrTimeout: a['attr-timeout'], entryTimeout: a['entry-timeout'], negativeTimeout: a['negative-timeout'], dataCache: a['data-cache'] }
}

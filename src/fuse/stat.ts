/**
 * Overlay attributes -> the stat layout of our patched fuse-native.
 *
 * The layout (patches/fuse-native-2.2.6.patch) is a Uint32Array of 22 slots:
 * mode, uid, gid, size lo/hi, dev, nlink, ino lo/hi, rdev, blksize, blocks lo/hi,
 * then atime, mtime, ctime as (sec lo, sec hi, nsec) each. 64-bit inode numbers and
 * nanosecond times reach the kernel unchanged.
 */
import type { Attr, StatFs } from '../overlay/overlay.js'

const TWO32 = 4294967296
const NS = 1000000000n

function put64 (a: Uint32Array, i: number, v: number): void {
  a[i] = v % TWO32
  a[i + 1] = Math.floor(v / TWO32)
}

function putTime (a: Uint32Array, i: number, ns: bigint): void {
  const sec = ns / NS
  put64(a, i, Number(sec))
  a[i + 2] = Number(ns - sec * NS)
}

export function statArray (attr: Attr): Uint32Array {
  const st = attr.st
  const a = new Uint32Array(22)
  a[0] = Number(st.mode)
  a[1] = Number(st.uid)
  a[2] = Number(st.gid)
  put64(a, 3, Number(attr.size))
  a[5] = 0 // st_dev is the FUSE connection's; the kernel fills it
  a[6] = attr.nlink
  put64(a, 7, attr.ino)
  a[9] = Number(st.rdev)
  a[10] = Number(st.blksize)
  put64(a, 11, attr.size === st.size ? Number(st.blocks) : Math.ceil(Number(attr.size) / 512))
  putTime(a, 13, st.atimeNs)
  putTime(a, 16, st.mtimeNs)
  putTime(a, 19, st.ctimeNs)
  return a
}

/**
 * A listing in patched fuse-native's packed readdir form: the names joined by '\0' (no
 * name can hold one), and [inoLo, inoHi, mode] per entry (what getdents reports).
 */
export function packedDirents (names: string[], inos: number[], modes: number[]): [string, Uint32Array] {
  const a = new Uint32Array(names.length * 3)
  for (let i = 0; i < names.length; i++) {
    put64(a, i * 3, inos[i])
    a[i * 3 + 2] = modes[i]
  }
  return [names.join('\0'), a]
}

export function statfsObject (s: StatFs): Record<string, number> {
  return { ...s, fsid: 0, flag: 0 }
}

/**
 * The benchmark's data sets, generated once into the work dir and reused while their stamp
 * (generator version + sizes) matches.
 *
 * Layout under `<work>/data-<quick|full>/`:
 *   host/tree/      N files of 1–16 KiB in nested directories (deterministic PRNG)
 *   host/big        one large file of PRNG bytes (1 GiB in full mode)
 *   host/dir10k/    a directory with 10,000 entries (empty files, names of varied length)
 *   host/cproj/     a small C project (generated .c files + Makefile)
 *   aux/small.tar   a tar of many small files (for `tar x` into the mount)
 *   aux/src.tar     a real source tree: this repo's src/ and test/ plus node_modules (full) or
 *                   node_modules/lru-cache (quick)
 *   aux/comp/       a compressible tree: JSON records, log lines, C-like sources
 *   aux/native-big  a copy of host/big that the native variant may write into
 * `host/` is what every variant mounts; nothing ever writes into it (checked at the end).
 * Does not: mount anything or time anything.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export interface DataParams {
  treeFiles: number
  bigBytes: number
  dirEntries: number
  smallTarFiles: number
  compBytes: number
  /** Whole node_modules (minus typescript) in the source tarball, or only lru-cache. */
  srcFull: boolean
}

export interface DataSet {
  root: string
  host: string
  tree: string
  big: string
  dir: string
  cproj: string
  smallTar: string
  srcTar: string
  comp: string
  nativeBig: string
  params: DataParams
  treeFileCount: number
  treeBytes: number
  smallTarFileCount: number
  srcFileCount: number
  srcBytes: number
  compFileCount: number
  compBytes: number
  /** lz4 frames of whole files with the `lz4` npm package: what the codec itself achieves. */
  compLz4RefRatio: number | null
  /** The byte of host/big in its middle, for the 1-byte-write check. */
  bigMiddleByte: number
  bigMtimeMs: number
  generatedAt: string
  generationSeconds: number
}

const GENERATOR_VERSION = 4

/** xorshift128: deterministic, fast, good enough for file contents and names. */
export class Prng {
  private a: number; private b: number; private c: number; private d: number
  constructor (seed: number) {
    this.a = seed | 0 || 1; this.b = 0x9e3779b9; this.c = 0x243f6a88; this.d = 0xb7e15162
    for (let i = 0; i < 16; i++) this.u32()
  }

  u32 (): number {
    let t = this.d
    const s = this.a
    this.d = this.c; this.c = this.b; this.b = s
    t ^= t << 11; t ^= t >>> 8
    this.a = (t ^ s ^ (s >>> 19)) >>> 0
    return this.a
  }

  /** Integer in [lo, hi]. */
  int (lo: number, hi: number): number { return lo + (this.u32() % (hi - lo + 1)) }
  pick<T> (xs: readonly T[]): T { return xs[this.u32() % xs.length] }
  fill (buf: Buffer): void {
    const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2)
    for (let i = 0; i < words.length; i++) words[i] = this.u32()
    for (let i = words.length * 4; i < buf.length; i++) buf[i] = this.u32() & 0xff
  }
}

function mkdirp (p: string): void { fs.mkdirSync(p, { recursive: true }) }

function duApparent (p: string): number {
  const r = spawnSync('du', ['-sb', p], { encoding: 'utf8' })
  return parseInt(r.stdout.split('\t')[0], 10)
}

function countFiles (p: string): number {
  let n = 0
  const rec = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) rec(path.join(d, e.name)); else n++
    }
  }
  rec(p)
  return n
}

function genTree (dir: string, files: number, rng: Prng): number {
  // Directories: 20 at the top, each with 0–8 children, each with 0–4 grandchildren.
  const dirs: string[] = []
  for (let i = 0; i < 20; i++) {
    const top = `d${String(i).padStart(2, '0')}`
    dirs.push(top)
    for (let j = rng.int(0, 8); j > 0; j--) {
      const sub = `${top}/sub${j}-${rng.int(0, 999)}`
      dirs.push(sub)
      for (let k = rng.int(0, 4); k > 0; k--) dirs.push(`${sub}/leaf${k}`)
    }
  }
  for (const d of dirs) mkdirp(path.join(dir, d))
  const exts = ['.c', '.h', '.txt', '.json', '.dat', '.md', '.js']
  const buf = Buffer.alloc(16384)
  let bytes = 0
  for (let i = 0; i < files; i++) {
    const size = rng.int(1024, 16384)
    rng.fill(buf)
    const name = `f${String(i).padStart(5, '0')}-${(rng.u32() % 46656).toString(36)}${rng.pick(exts)}`
    fs.writeFileSync(path.join(dir, rng.pick(dirs), name), buf.subarray(0, size))
    bytes += size
  }
  return bytes
}

function genBig (file: string, bytes: number, rng: Prng): void {
  const chunk = Buffer.alloc(1 << 20)
  const fd = fs.openSync(file, 'w')
  try {
    for (let off = 0; off < bytes; off += chunk.length) {
      rng.fill(chunk)
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - off))
    }
  } finally { fs.closeSync(fd) }
}

function genDir (dir: string, entries: number, rng: Prng): void {
  mkdirp(dir)
  for (let i = 0; i < entries; i++) {
    let name = `entry-${String(i).padStart(5, '0')}-`
    for (let k = rng.int(1, 30); k > 0; k--) name += 'abcdefghijklmnopqrstuvwxyz0123456789'[rng.u32() % 36]
    fs.closeSync(fs.openSync(path.join(dir, name), 'w'))
  }
}

const WORDS = ['alpha', 'beta', 'gamma', 'delta', 'buffer', 'count', 'index', 'value', 'state', 'node',
  'entry', 'table', 'cache', 'inode', 'block', 'offset', 'length', 'result', 'error', 'flags', 'mode',
  'path', 'name', 'size', 'user', 'group', 'data', 'item', 'list', 'next', 'prev', 'head', 'tail',
  'request', 'response', 'session', 'token', 'config', 'option', 'handler', 'worker', 'queue']
const CITIES = ['Berlin', 'Paris', 'Lisbon', 'Oslo', 'Tokyo', 'Austin', 'Nairobi', 'Lima', 'Pune', 'Perth']
const LEVELS = ['INFO', 'INFO', 'INFO', 'INFO', 'DEBUG', 'DEBUG', 'WARN', 'ERROR']
const PATHS = ['/api/v1/users', '/api/v1/orders', '/api/v1/items', '/healthz', '/api/v2/search', '/static/app.js']

function ident (rng: Prng): string {
  return `${rng.pick(WORDS)}_${rng.pick(WORDS)}${rng.int(0, 3) === 0 ? String(rng.int(0, 99)) : ''}`
}

/** One C-like source file of roughly `target` bytes (compiles with gcc -O2 when `compilable`). */
function cSource (rng: Prng, target: number, prefix: string, compilable: boolean): string {
  let s = `/* ${prefix}: generated for the siblingfs benchmark */\n#include "common.h"\n\n`
  let n = 0
  let first = ''
  while (s.length < target) {
    const name = `${ident(rng)}_${n++}`
    if (first === '') first = name
    const fn = `${prefix}_${name}`
    const a = `p_${ident(rng)}`; const b = `n_${ident(rng)}`
    s += `/* ${rng.pick(WORDS)} the ${rng.pick(WORDS)} of a ${rng.pick(WORDS)} */\n`
    s += `long ${fn}(const long *${a}, long ${b})\n{\n  long acc = ${rng.int(0, 1000)};\n`
    s += `  for (long i = 0; i < ${b}; i++) {\n`
    for (let k = rng.int(2, 6); k > 0; k--) {
      const op = rng.pick(['+', '-', '^', '|', '&'])
      s += `    acc = (acc * ${rng.int(3, 97)} ${op} ${a}[i % ${rng.int(1, 64)}]) % ${rng.int(1000, 1000000)};\n`
    }
    s += `    if (acc > ${rng.int(100, 9999)}) acc ${rng.pick(['-=', '^=', '+='])} ${rng.int(1, 500)};\n  }\n  return acc;\n}\n\n`
  }
  if (compilable) s += `long ${prefix}_sum(const long *v, long n);\nlong ${prefix}_entry(const long *v, long n) { return ${prefix}_sum(v, n) + ${prefix}_${first}(v, n); }\n`
  return s
}

function genCProject (dir: string, rng: Prng): void {
  mkdirp(dir)
  const units = ['parse', 'eval', 'store', 'index', 'net', 'util']
  let header = '#ifndef COMMON_H\n#define COMMON_H\n'
  for (const u of units) header += `long ${u}_entry(const long *v, long n);\nlong ${u}_sum(const long *v, long n);\n`
  header += '#endif\n'
  fs.writeFileSync(path.join(dir, 'common.h'), header)
  for (const u of units) {
    let src = cSource(rng, 24_000, u, true)
    src += `long ${u}_sum(const long *v, long n) { long s = 0; for (long i = 0; i < n; i++) s += v[i]; return s; }\n`
    fs.writeFileSync(path.join(dir, `${u}.c`), src)
  }
  let main = '#include <stdio.h>\n#include "common.h"\nint main(void)\n{\n  long v[64];\n  for (int i = 0; i < 64; i++) v[i] = i;\n  long t = 0;\n'
  for (const u of units) main += `  t += ${u}_entry(v, 64);\n`
  main += '  printf("%ld\\n", t);\n  return 0;\n}\n'
  fs.writeFileSync(path.join(dir, 'main.c'), main)
  const objs = [...units, 'main'].map((u) => `${u}.o`).join(' ')
  fs.writeFileSync(path.join(dir, 'Makefile'),
    `CC = gcc\nCFLAGS = -O2 -Wall -Wno-unused-function\nOBJS = ${objs}\n\n` +
    'app: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\n%.o: %.c common.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n' +
    'clean:\n\trm -f app $(OBJS)\n\n.PHONY: clean\n')
}

function genSmallFiles (dir: string, files: number, rng: Prng): void {
  const buf = Buffer.alloc(4096)
  const dirs = 100
  for (let d = 0; d < dirs; d++) mkdirp(path.join(dir, `pkg${String(d).padStart(3, '0')}`))
  for (let i = 0; i < files; i++) {
    const size = rng.int(512, 4096)
    rng.fill(buf)
    fs.writeFileSync(path.join(dir, `pkg${String(i % dirs).padStart(3, '0')}`, `file${String(i).padStart(5, '0')}.txt`), buf.subarray(0, size))
  }
}

function jsonRecord (rng: Prng, id: number): object {
  const user = `${rng.pick(WORDS)}_${rng.int(1, 9999)}`
  return {
    id,
    user,
    email: `${user}@example.${rng.pick(['com', 'org', 'net'])}`,
    created: new Date(Date.UTC(2024, rng.int(0, 11), rng.int(1, 28), rng.int(0, 23), rng.int(0, 59), rng.int(0, 59))).toISOString(),
    active: rng.int(0, 1) === 1,
    score: rng.int(0, 100000) / 100,
    tags: Array.from({ length: rng.int(0, 4) }, () => rng.pick(WORDS)),
    address: { city: rng.pick(CITIES), zip: String(rng.int(10000, 99999)), street: `${rng.int(1, 300)} ${rng.pick(WORDS)} street` },
    ref: rng.u32().toString(16)
  }
}

function logLine (rng: Prng, t: number): string {
  const status = rng.pick([200, 200, 200, 200, 201, 204, 304, 404, 500])
  return `${new Date(t).toISOString()} ${rng.pick(LEVELS)} [worker-${rng.int(1, 8)}] ${rng.pick(['GET', 'GET', 'POST', 'PUT'])} ` +
    `${rng.pick(PATHS)}/${rng.int(1, 50000)} status=${status} duration_ms=${rng.int(1, 2500) / 10} bytes=${rng.int(100, 90000)} ` +
    `req=${rng.u32().toString(16).padStart(8, '0')}${rng.int(0, 9) === 0 ? ` msg="${rng.pick(WORDS)} ${rng.pick(WORDS)} failed: ${rng.pick(WORDS)} timeout"` : ''}\n`
}

/** A compressible tree of about `bytes`: one third JSON, one third logs, one third C. */
function genComp (dir: string, bytes: number, rng: Prng): void {
  for (const d of ['json', 'logs', 'src']) mkdirp(path.join(dir, d))
  let total = 0; let n = 0; let id = 1; let t = Date.UTC(2024, 4, 1)
  while (total < bytes) {
    const kind = n % 3
    const size = rng.int(16 << 10, 256 << 10)
    let s = ''
    if (kind === 0) {
      const pretty = rng.int(0, 1) === 0
      const recs: object[] = []
      let est = 0
      while (est < size) { const r = jsonRecord(rng, id++); recs.push(r); est += pretty ? 330 : 230 }
      s = pretty ? JSON.stringify(recs, null, 2) : recs.map((r) => JSON.stringify(r)).join('\n') + '\n'
      fs.writeFileSync(path.join(dir, 'json', `records-${n}.json`), s)
    } else if (kind === 1) {
      const parts: string[] = []
      let len = 0
      while (len < size) { t += rng.int(1, 900); const l = logLine(rng, t); parts.push(l); len += l.length }
      s = parts.join('')
      fs.writeFileSync(path.join(dir, 'logs', `app-${n}.log`), s)
    } else {
      s = cSource(rng, size, `m${n}`, false)
      fs.writeFileSync(path.join(dir, 'src', `module${n}.c`), s)
    }
    total += Buffer.byteLength(s)
    n++
  }
}

function lz4RefRatio (dir: string): number | null {
  let lz4: { encode: (b: Buffer) => Buffer }
  try { lz4 = require('lz4') as { encode: (b: Buffer) => Buffer } } catch { return null }
  let raw = 0; let enc = 0
  const rec = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) rec(p)
      else { const b = fs.readFileSync(p); raw += b.length; enc += lz4.encode(b).length }
    }
  }
  rec(dir)
  return raw === 0 ? null : enc / raw
}

function run (cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
}

function makeSrcTar (repo: string, tarFile: string, full: boolean, tmp: string): void {
  fs.rmSync(tmp, { recursive: true, force: true })
  mkdirp(path.join(tmp, 'node_modules'))
  for (const d of ['src', 'test', 'package.json', 'tsconfig.json']) {
    if (fs.existsSync(path.join(repo, d))) run('cp', ['-a', path.join(repo, d), tmp])
  }
  if (full) {
    for (const e of fs.readdirSync(path.join(repo, 'node_modules'))) {
      if (e === 'typescript' || e === '.cache') continue
      run('cp', ['-a', path.join(repo, 'node_modules', e), path.join(tmp, 'node_modules')])
    }
  } else {
    run('cp', ['-a', path.join(repo, 'node_modules', 'lru-cache'), path.join(tmp, 'node_modules')])
  }
  run('tar', ['cf', tarFile, '--sort=name', '-C', tmp, '.'])
}

/** Returns the data set, generating it when missing or generated with other parameters. */
export function ensureData (work: string, mode: 'quick' | 'full', params: DataParams, repo: string, regen: boolean, log: (s: string) => void): DataSet {
  const root = path.join(work, `data-${mode}`)
  const stampFile = path.join(root, 'STAMP.json')
  const want = JSON.stringify({ v: GENERATOR_VERSION, params })
  if (!regen && fs.existsSync(stampFile)) {
    try {
      const st = JSON.parse(fs.readFileSync(stampFile, 'utf8')) as { key: string, data: DataSet }
      if (st.key === want && fs.existsSync(st.data.big) && fs.statSync(st.data.big).mtimeMs === st.data.bigMtimeMs) {
        log(`data: reusing ${root} (generated ${st.data.generatedAt})`)
        return st.data
      }
    } catch { /* regenerate */ }
  }
  log(`data: generating ${root} ...`)
  const t0 = Date.now()
  fs.rmSync(root, { recursive: true, force: true })
  const host = path.join(root, 'host'); const aux = path.join(root, 'aux')
  mkdirp(host); mkdirp(aux)
  const d: DataSet = {
    root, host,
    tree: path.join(host, 'tree'), big: path.join(host, 'big'), dir: path.join(host, 'dir10k'),
    cproj: path.join(host, 'cproj'), smallTar: path.join(aux, 'small.tar'), srcTar: path.join(aux, 'src.tar'),
    comp: path.join(aux, 'comp'), nativeBig: path.join(aux, 'native-big'),
    params, treeFileCount: 0, treeBytes: 0, smallTarFileCount: 0, srcFileCount: 0, srcBytes: 0,
    compFileCount: 0, compBytes: 0, compLz4RefRatio: null, bigMiddleByte: 0, bigMtimeMs: 0,
    generatedAt: new Date().toISOString(), generationSeconds: 0
  }
  log(`data:   tree of ${params.treeFiles} files`)
  d.treeBytes = genTree(d.tree, params.treeFiles, new Prng(1))
  d.treeFileCount = params.treeFiles
  log(`data:   big file of ${params.bigBytes} bytes`)
  genBig(d.big, params.bigBytes, new Prng(2))
  log(`data:   directory of ${params.dirEntries} entries, C project, tarballs`)
  genDir(d.dir, params.dirEntries, new Prng(3))
  genCProject(d.cproj, new Prng(4))
  const small = path.join(aux, 'small-src')
  genSmallFiles(small, params.smallTarFiles, new Prng(5))
  run('tar', ['cf', d.smallTar, '--sort=name', '-C', small, '.'])
  fs.rmSync(small, { recursive: true, force: true })
  d.smallTarFileCount = params.smallTarFiles
  const srcTmp = path.join(aux, 'src-src')
  makeSrcTar(repo, d.srcTar, params.srcFull, srcTmp)
  d.srcFileCount = countFiles(srcTmp)
  d.srcBytes = duApparent(srcTmp)
  fs.rmSync(srcTmp, { recursive: true, force: true })
  log(`data:   compressible tree of ${params.compBytes} bytes`)
  genComp(d.comp, params.compBytes, new Prng(6))
  d.compFileCount = countFiles(d.comp)
  d.compBytes = duApparent(d.comp)
  d.compLz4RefRatio = lz4RefRatio(d.comp)
  log('data:   copy of the big file for the native variant')
  run('cp', ['--sparse=never', d.big, d.nativeBig])
  const fd = fs.openSync(d.big, 'r')
  const one = Buffer.alloc(1)
  fs.readSync(fd, one, 0, 1, Math.floor(params.bigBytes / 2))
  fs.closeSync(fd)
  d.bigMiddleByte = one[0]
  run('sync', [])
  d.bigMtimeMs = fs.statSync(d.big).mtimeMs
  d.generationSeconds = (Date.now() - t0) / 1000
  fs.writeFileSync(stampFile, JSON.stringify({ key: want, data: d }, null, 2))
  log(`data: generated in ${d.generationSeconds.toFixed(0)} s`)
  return d
}

/** A fingerprint of the host data set that must not change during a run. */
export function hostFingerprint (d: DataSet): string {
  const parts: string[] = []
  for (const p of [d.host, d.tree, d.big, d.dir, d.cproj]) {
    const st = fs.statSync(p)
    parts.push(`${p}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.nlink}`)
  }
  const fd = fs.openSync(d.big, 'r')
  const one = Buffer.alloc(1)
  fs.readSync(fd, one, 0, 1, Math.floor(d.params.bigBytes / 2))
  fs.closeSync(fd)
  parts.push(`mid:${one[0]}`)
  return parts.join('|')
}

/**
 * The workloads: what is run against each mount, how it is timed, and what it reports.
 *
 * Owns: the exact commands (each run in a fresh process), "cold" (a fresh mount, then
 * `sync; echo 3 > /proc/sys/vm/drop_caches` right before the command) and "warm" (the same
 * command run once on the same mount before the measured run), the metric definitions, and
 * the sanity checks that make a broken file system show up as an error instead of a fast
 * number (file counts, byte counts, exit statuses, the host byte after the 1-byte write).
 * Contract: `run()` mounts through `ctx.withMount` (which unmounts in a finally block and
 * records the daemon's peak RSS) and reports samples through `ctx.record`; it throws on a
 * failed command or check, and the caller records the error and goes on.
 * Does not: aggregate, compare or print results (run.ts, report.ts).
 */
import fs from 'node:fs'
import path from 'node:path'
import type { DataSet } from './fixtures.js'
import { must, run, sh, type RunResult } from './exec.js'
import { duBytes, type Mounted, type VariantName } from './variants.js'

export interface MetricDef {
  id: string
  workload: string
  label: string
  unit: string
  /** Which direction is better. */
  better: 'higher' | 'lower'
  /** speed: normalised against native in the chart; size: store cost, shown separately. */
  kind: 'speed' | 'size'
}

export interface ModeParams {
  /** Fresh mounts (repetitions) per workload and variant. */
  mounts: number
  /** Warm measured runs per mount. */
  warm: number
  /** New-file writes per mount (seqwrite, untar, compress write). */
  writesPerMount: number
  writeBytes: number
  fioRuntime: number
  /** Measured fio runs per mount (after one untimed run). */
  fioRuns: number
  readdirRuns: number
  gitStatusRuns: number
}

export interface Ctx {
  data: DataSet
  p: ModeParams
  gitEnv: NodeJS.ProcessEnv
  record: (metric: string, value: number) => void
  note: (metric: string, text: string) => void
  /** Mounts the variant in `runDir` (the same runDir again reuses its store), runs `fn`,
   *  and always unmounts. */
  withMount: <T>(fn: (m: Mounted) => Promise<T>) => Promise<T>
  dropCaches: () => Promise<void>
  log: (s: string) => void
  variant: VariantName
  runDir: string
}

export interface Workload {
  name: string
  what: string
  metrics: MetricDef[]
  run: (c: Ctx) => Promise<void>
}

async function timed (p: Promise<RunResult>, what: string): Promise<RunResult> { return await must(p, what) }

/** The 1-byte writer (argv: file, offset): prints the ms that open + pwrite + close took. */
const WRITE1_SCRIPT = `
const fs = require('fs')
const [file, off] = process.argv.slice(1)
const t0 = process.hrtime.bigint()
const fd = fs.openSync(file, fs.constants.O_WRONLY)
fs.writeSync(fd, Buffer.from('x'), 0, 1, Number(off))
fs.closeSync(fd)
const t1 = process.hrtime.bigint()
process.stdout.write(String(Number(t1 - t0) / 1e6) + '\\n')
`

async function syncAll (): Promise<void> { await must(run('sync', []), 'sync') }

/** Reads a source file of a timed command into the page cache first (untimed): the VMs this
 *  runs on reclaim idle page cache within minutes, and the timing is the file system's. */
async function preRead (file: string): Promise<void> { await must(run('cat', [file], { captureStdout: false }), 'pre-read ' + file) }

const MB = 1e6

function m (id: string, workload: string, label: string, unit: string, better: 'higher' | 'lower', kind: 'speed' | 'size' = 'speed'): MetricDef {
  return { id, workload, label, unit, better, kind }
}

async function countFiles (dir: string): Promise<number> {
  const r = await must(sh(`find '${dir}' -type f | wc -l`, { captureStdout: true }), 'find | wc -l')
  return parseInt(r.stdout, 10)
}

function checkCount (what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: saw ${got} files, expected ${want}`)
}

export const WORKLOADS: Workload[] = [
  {
    name: 'stat',
    what: 'stat every file of the tree: find M/tree -type f -printf "%s\\n" > /dev/null',
    metrics: [m('stat-cold', 'stat', 'stat all files, cold', 'files/s', 'higher'), m('stat-warm', 'stat', 'stat all files, warm', 'files/s', 'higher')],
    run: async (c) => c.withMount(async (mt) => {
      const tree = path.join(mt.view, 'tree')
      const cmd = (): Promise<RunResult> => run('find', [tree, '-type', 'f', '-printf', '%s\n'])
      await c.dropCaches()
      let r = await timed(cmd(), 'find')
      c.record('stat-cold', c.data.treeFileCount / (r.ms / 1000))
      for (let i = 0; i < c.p.warm; i++) {
        r = await timed(cmd(), 'find')
        c.record('stat-warm', c.data.treeFileCount / (r.ms / 1000))
      }
      checkCount('find', await countFiles(tree), c.data.treeFileCount)
    })
  },
  {
    name: 'read',
    what: 'open+read+close every file: tar cf - -C M/tree . | wc -c (wc reads the whole stream, like cat > /dev/null, and gives the byte count to check)',
    metrics: [m('read-cold', 'read', 'open+read+close all files (tar), cold', 'files/s', 'higher'), m('read-warm', 'read', 'open+read+close all files (tar), warm', 'files/s', 'higher')],
    run: async (c) => c.withMount(async (mt) => {
      const tree = path.join(mt.view, 'tree')
      const cmd = async (): Promise<RunResult> => {
        const r = await timed(sh(`tar cf - -C '${tree}' . | wc -c`, { captureStdout: true }), 'tar c')
        const bytes = parseInt(r.stdout, 10)
        if (!(bytes >= c.data.treeBytes)) throw new Error(`tar produced ${bytes} bytes, expected at least ${c.data.treeBytes}`)
        return r
      }
      await c.dropCaches()
      let r = await cmd()
      c.record('read-cold', c.data.treeFileCount / (r.ms / 1000))
      for (let i = 0; i < c.p.warm; i++) {
        r = await cmd()
        c.record('read-warm', c.data.treeFileCount / (r.ms / 1000))
      }
    })
  },
  {
    name: 'seqread',
    what: 'sequential read of the big file, warm: dd if=M/big of=/dev/null bs=128k (run once before, untimed)',
    metrics: [m('seqread', 'seqread', 'sequential read of the big file, warm', 'MB/s', 'higher')],
    run: async (c) => c.withMount(async (mt) => {
      const big = path.join(mt.view, 'big')
      const cmd = async (): Promise<RunResult> => {
        const r = await timed(run('dd', [`if=${big}`, 'of=/dev/null', 'bs=128k']), 'dd')
        const got = /^(\d+) bytes/m.exec(r.stderr)
        if (got === null || parseInt(got[1], 10) !== c.data.params.bigBytes) throw new Error(`dd read ${got?.[1] ?? '?'} bytes, expected ${c.data.params.bigBytes}`)
        return r
      }
      await cmd()
      for (let i = 0; i < c.p.warm; i++) {
        const r = await cmd()
        c.record('seqread', c.data.params.bigBytes / MB / (r.ms / 1000))
      }
    })
  },
  {
    name: 'randread',
    what: 'random 4 KiB reads of the big file, 4 jobs, warm: fio --rw=randread --bs=4k --numjobs=4 --time_based --runtime=N --ioengine=psync --group_reporting --invalidate=0 --readonly (after dd of the whole file and one untimed fio run)',
    metrics: [m('randread', 'randread', 'random 4 KiB reads, 4 jobs, warm', 'IOPS', 'higher')],
    run: async (c) => c.withMount(async (mt) => {
      const big = path.join(mt.view, 'big')
      const fio = async (): Promise<number> => {
        const r = await timed(run('fio', ['--name=randread', `--filename=${big}`, '--rw=randread', '--bs=4k', '--numjobs=4',
          '--time_based', `--runtime=${c.p.fioRuntime}`, '--ioengine=psync', '--group_reporting', '--invalidate=0', '--readonly',
          '--output-format=json'], { captureStdout: true }), 'fio')
        const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<{ read: { iops: number }, error: number }> }
        if (j.jobs[0].error !== 0) throw new Error(`fio job error ${j.jobs[0].error}`)
        return j.jobs[0].read.iops
      }
      await timed(run('dd', [`if=${big}`, 'of=/dev/null', 'bs=128k']), 'dd warm-up')
      await fio()
      for (let i = 0; i < c.p.fioRuns; i++) c.record('randread', await fio())
    })
  },
  {
    name: 'seqwrite',
    what: 'sequential write of a new file: dd if=HOST/big of=M/new bs=1M count=N, timed to its close (as in the issue\'s table: the data reaches the file system, a FUSE daemon included, since a FUSE close waits for cached writes; not the disk); then, into a second new file, the same with conv=fsync (timed to the end of the fsync: the disk\'s speed, shown apart). Source read from the host dir, pre-read into the page cache; before each write, untimed: as many bytes written into a scratch file beside the mount and deleted (memory made hot, see the code), then sync',
    metrics: [
      m('seqwrite', 'seqwrite', 'sequential write of a new file (dd, to its close)', 'MB/s', 'higher'),
      m('seqwrite-fsync', 'seqwrite', 'same, to the end of a final fsync (disk-bound)', 'MB/s', 'higher')
    ],
    run: async (c) => c.withMount(async (mt) => {
      const count = Math.round(c.p.writeBytes / (1 << 20))
      await timed(run('dd', [`if=${c.data.big}`, 'of=/dev/null', 'bs=1M', `count=${count}`]), 'dd pre-read')
      let n = 0
      const write = async (metric: string, extra: string[]): Promise<void> => {
        // Memory made hot first: this kind of VM hands freed pages back to its host (free page
        // reporting), and a write into pages the host must fault in again runs at 300-500 MB/s
        // whatever the file system (native included). Writing as much into a scratch file on
        // the same file system and deleting it leaves that many free pages the timed write
        // reuses (they are reported back only after seconds). Untimed, for every variant.
        const scratch = path.join(c.runDir, 'prefault')
        await timed(run('dd', [`if=${c.data.big}`, `of=${scratch}`, 'bs=1M', `count=${count}`]), 'dd prefault')
        fs.rmSync(scratch)
        await syncAll()
        const out = path.join(mt.writeDir, `new-${n++}`)
        const r = await timed(run('dd', [`if=${c.data.big}`, `of=${out}`, 'bs=1M', `count=${count}`, ...extra]), 'dd write')
        const size = fs.statSync(out).size
        if (size !== count << 20) throw new Error(`wrote ${size} bytes, expected ${count << 20}`)
        c.record(metric, (count << 20) / MB / (r.ms / 1000))
      }
      for (let i = 0; i < c.p.writesPerMount; i++) {
        await write('seqwrite', [])
        await write('seqwrite-fsync', ['conv=fsync'])
      }
    })
  },
  {
    name: 'untar',
    what: 'create many small files: mkdir M/x && tar xf small.tar -C M/x (before, untimed: small.tar read into the page cache, sync; no fsync)',
    metrics: [m('untar', 'untar', 'create small files (tar x)', 'files/s', 'higher')],
    run: async (c) => c.withMount(async (mt) => {
      for (let i = 0; i < c.p.writesPerMount; i++) {
        await preRead(c.data.smallTar)
        await syncAll()
        const dst = path.join(mt.writeDir, `x${i}`)
        const r = await timed(sh(`mkdir '${dst}' && tar xf '${c.data.smallTar}' -C '${dst}'`), 'tar x')
        c.record('untar', c.data.smallTarFileCount / (r.ms / 1000))
        checkCount('untar', await countFiles(dst), c.data.smallTarFileCount)
      }
    })
  },
  {
    name: 'readdir',
    what: 'list the 10,000-entry directory, warm: hyperfine -N --warmup 3 --runs N "ls -f M/dir10k" (each run a fresh ls; ls output to /dev/null)',
    metrics: [m('readdir', 'readdir', 'readdir of 10,000 entries (ls -f), warm', 'ms', 'lower')],
    run: async (c) => c.withMount(async (mt) => {
      const dir = path.join(mt.view, 'dir10k')
      const n = await must(sh(`ls -f '${dir}' | wc -l`, { captureStdout: true }), 'ls -f | wc -l')
      if (parseInt(n.stdout, 10) !== c.data.params.dirEntries + 2) throw new Error(`ls -f listed ${n.stdout.trim()} entries, expected ${c.data.params.dirEntries + 2}`)
      const json = path.join(c.runDir, 'hyperfine.json')
      await timed(run('hyperfine', ['-N', '--style', 'none', '--warmup', '3', '--runs', String(c.p.readdirRuns), '--export-json', json, `ls -f ${dir}`]), 'hyperfine')
      const j = JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ times: number[] }> }
      for (const t of j.results[0].times) c.record('readdir', t * 1000)
    })
  },
  {
    name: 'write1',
    what: "one byte into the middle of the big host file: a fresh node process opens M/big O_WRONLY, pwrites 1 byte at SIZE/2, closes it, and prints the time those three calls took (the file system's cost); also recorded: the wall time of that whole process, start-up included; growth of the upper/store dir's allocated bytes (du -sB1, sync before each du)",
    metrics: [
      m('write1-ms', 'write1', 'write 1 byte into the big host file (open+write+close)', 'ms', 'lower'),
      m('write1-wall-ms', 'write1', 'same, wall time of the writing process (node start-up included)', 'ms', 'lower'),
      m('write1-growth', 'write1', 'store growth after the 1-byte write (allocated)', 'bytes', 'lower', 'size')
    ],
    run: async (c) => c.withMount(async (mt) => {
      const off = Math.floor(c.data.params.bigBytes / 2)
      const target = mt.store === null ? c.data.nativeBig : path.join(mt.view, 'big')
      await syncAll()
      const before = mt.store === null ? null : await duBytes(mt.store)
      const w = await timed(run(process.execPath, ['-e', WRITE1_SCRIPT, target, String(off)], { captureStdout: true }), 'write 1 byte (node)')
      const ms = Number(w.stdout.trim())
      if (!Number.isFinite(ms) || ms <= 0) throw new Error(`the 1-byte writer printed ${JSON.stringify(w.stdout)}`)
      c.record('write1-ms', ms)
      c.record('write1-wall-ms', w.ms)
      await syncAll()
      if (mt.store !== null && before !== null) {
        const after = await duBytes(mt.store)
        c.record('write1-growth', after.allocated - before.allocated)
        c.note('write1-growth', `apparent growth ${after.apparent - before.apparent} B`)
      }
      // The view shows the byte, the host does not.
      const fd = fs.openSync(target, 'r')
      const b = Buffer.alloc(3)
      fs.readSync(fd, b, 0, 3, off - 1)
      fs.closeSync(fd)
      if (b[1] !== 0x78) throw new Error(`the view shows byte ${b[1]} at ${off}, expected 0x78`)
      const hfd = fs.openSync(c.data.big, 'r')
      const h = Buffer.alloc(3)
      fs.readSync(hfd, h, 0, 3, off - 1)
      fs.closeSync(hfd)
      if (h[1] !== c.data.bigMiddleByte) throw new Error('the HOST file changed at the written offset')
      if (h[0] !== b[0] || h[2] !== b[2]) throw new Error('the view differs from the host next to the written byte')
    })
  },
  {
    name: 'git',
    what: 'untar a real source tree into M, git init && git add -A && git commit -q (timed once as git-setup), then git status (one untimed run, then N timed runs)',
    metrics: [
      m('git-setup', 'git', 'untar source tree + git init/add/commit', 's', 'lower'),
      m('git-status', 'git', 'git status, warm', 'ms', 'lower')
    ],
    run: async (c) => c.withMount(async (mt) => {
      const dst = path.join(mt.writeDir, 'src')
      await syncAll()
      await preRead(c.data.srcTar)
      const r = await timed(sh(`mkdir '${dst}' && tar xf '${c.data.srcTar}' -C '${dst}' && cd '${dst}' && git -c init.defaultBranch=main init -q && git add -A && git commit -q -m bench`, { env: c.gitEnv }), 'git setup')
      c.record('git-setup', r.ms / 1000)
      await timed(run('git', ['-C', dst, 'status'], { env: c.gitEnv }), 'git status')
      for (let i = 0; i < c.p.gitStatusRuns; i++) {
        const s = await timed(run('git', ['-C', dst, 'status'], { env: c.gitEnv }), 'git status')
        c.record('git-status', s.ms)
      }
      const p = await timed(run('git', ['-C', dst, 'status', '--porcelain'], { env: c.gitEnv, captureStdout: true }), 'git status --porcelain')
      if (p.stdout.trim() !== '') throw new Error(`git status is not clean after commit: ${p.stdout.trim().split('\n').slice(0, 3).join(' | ')}`)
    })
  },
  {
    name: 'make',
    what: 'clean build of a small C project: make -C M/cproj -j2 -s (native: a fresh copy of cproj; sync before, untimed)',
    metrics: [m('make', 'make', 'make -j2, clean build of a small C project', 's', 'lower')],
    run: async (c) => c.withMount(async (mt) => {
      let dir = path.join(mt.view, 'cproj')
      if (mt.store === null) {
        dir = path.join(mt.writeDir, 'cproj')
        await must(run('cp', ['-a', c.data.cproj, dir]), 'cp cproj')
      }
      await syncAll()
      const r = await timed(run('make', ['-C', dir, '-j2', '-s']), 'make')
      c.record('make', r.ms / 1000)
      await timed(run(path.join(dir, 'app'), []), 'run the built program')
    })
  },
  {
    name: 'compress',
    what: 'copy a compressible tree (JSON, logs, C) into M with cp -a (timed: comp-write), unmount, store growth (du -sB1 / du -sb) vs the raw apparent size; then a fresh mount: tar cf - -C M/comp . | wc -c cold (drop caches) and warm',
    metrics: [
      m('comp-write', 'compress', 'cp -a of the compressible tree into the mount', 'MB/s', 'higher'),
      m('comp-ratio', 'compress', 'store growth / raw size, allocated (du -sB1)', '%', 'lower', 'size'),
      m('comp-ratio-apparent', 'compress', 'store growth / raw size, apparent (du -sb)', '%', 'lower', 'size'),
      m('comp-read-cold', 'compress', 'read the compressible tree back (tar), cold', 'MB/s', 'higher'),
      m('comp-read-warm', 'compress', 'read the compressible tree back (tar), warm', 'MB/s', 'higher')
    ],
    run: async (c) => {
      const raw = c.data.compBytes
      let storeDir: string | null = null
      let before = { allocated: 0, apparent: 0 }
      let rel = ''
      await c.withMount(async (mt) => {
        storeDir = mt.store ?? mt.writeDir
        rel = path.relative(mt.view, path.join(mt.writeDir, 'comp'))
        if (mt.store === null) rel = path.join(mt.writeDir, 'comp')
        await syncAll()
        before = await duBytes(storeDir)
        const r = await timed(run('cp', ['-a', c.data.comp, path.join(mt.writeDir, 'comp')]), 'cp -a')
        c.record('comp-write', raw / MB / (r.ms / 1000))
      })
      await syncAll()
      if (storeDir === null) throw new Error('no store')
      const after = await duBytes(storeDir)
      c.record('comp-ratio', 100 * (after.allocated - before.allocated) / raw)
      c.record('comp-ratio-apparent', 100 * (after.apparent - before.apparent) / raw)
      await c.withMount(async (mt) => {
        const dir = mt.store === null ? rel : path.join(mt.view, rel)
        const cmd = async (): Promise<RunResult> => {
          const r = await timed(sh(`tar cf - -C '${dir}' . | wc -c`, { captureStdout: true }), 'tar c')
          if (!(parseInt(r.stdout, 10) >= raw)) throw new Error(`tar produced ${r.stdout.trim()} bytes, expected at least ${raw}`)
          return r
        }
        await c.dropCaches()
        let r = await cmd()
        c.record('comp-read-cold', raw / MB / (r.ms / 1000))
        for (let i = 0; i < c.p.warm; i++) {
          r = await cmd()
          c.record('comp-read-warm', raw / MB / (r.ms / 1000))
        }
      })
    }
  }
]

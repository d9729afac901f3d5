/**
 * `npm run bench [-- --quick] [--only w,...] [--variants v,...] [--out DIR] [--work DIR]
 * [--keep] [--regen]`: benchmarks siblingfs against native, kernel overlayfs, fuse-overlayfs
 * and unionfs-fuse, over the same generated host data.
 *
 * Owns: the command line, the run's order (workload → repetition → variant, so that a
 * change in machine load hits every variant alike), per-run directories, recording errors
 * without stopping, the machine description, and writing bench/results/<ts>.json,
 * latest.md and latest.svg.
 * Contract: leaves no mount and no daemon behind, also on failure or SIGINT (exec.ts); never
 * writes into the host data set (checked at the end and reported).
 * Does not: define workloads (workloads.ts), mount (variants.ts) or format (report.ts).
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { alive, installCleanupHandlers, mountedPaths, must, run } from './exec.js'
import { ensureData, hostFingerprint, type DataParams } from './fixtures.js'
import { finishCell, makeCell, renderMarkdown, renderSvg, type Cell, type Machine, type Report } from './report.js'
import { ALL_VARIANTS, DEFAULT_VARIANTS, VARIANTS, type VariantEnv, type VariantName } from './variants.js'
import { WORKLOADS, type Ctx, type ModeParams } from './workloads.js'

interface Args {
  quick: boolean
  only: string[] | null
  variants: VariantName[]
  out: string
  work: string
  keep: boolean
  regen: boolean
}

const REPO = path.resolve(__dirname, '..', '..')

function usage (msg?: string): never {
  if (msg !== undefined) process.stderr.write(`bench: ${msg}\n`)
  process.stderr.write(`usage: npm run bench -- [--quick] [--only ${WORKLOADS.map((w) => w.name).join(',')}]
       [--variants ${ALL_VARIANTS.join(',')}] [--out DIR] [--work DIR] [--keep] [--regen]
  --quick     small data sets, 1 mount per variant (1 cold + 3 warm runs): a few minutes
  --only      run only these workloads
  --variants  run only these variants (default: all but the opt-in siblingfs-1s, siblingfs
              with 1 s attr/entry/negative timeouts instead of the default 60 s, and
              siblingfs-spin, siblingfs with --spin-wait 100)
  --out       where results go (default bench/results)
  --work      where data sets and mounts live (default .bench-work in the repo)
  --keep      keep each run's upper/store directory (default: deleted after each run)
  --regen     regenerate the data sets even if the stamp matches
`)
  process.exit(msg === undefined ? 0 : 64)
}

function parseArgs (argv: string[]): Args {
  const a: Args = { quick: false, only: null, variants: [...DEFAULT_VARIANTS], out: path.join(REPO, 'bench', 'results'), work: path.join(REPO, '.bench-work'), keep: false, regen: false }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const val = (): string => { const v = argv[++i]; if (v === undefined) usage(`${k} needs a value`); return v }
    const eq = k.indexOf('=')
    if (eq > 0) { argv.splice(i + 1, 0, k.slice(eq + 1)); argv[i] = k.slice(0, eq); i--; continue }
    switch (k) {
      case '--quick': a.quick = true; break
      case '--full': a.quick = false; break
      case '--only': a.only = val().split(',').filter((s) => s !== ''); break
      case '--variants': a.variants = val().split(',').filter((s) => s !== '') as VariantName[]; break
      case '--out': a.out = path.resolve(val()); break
      case '--work': a.work = path.resolve(val()); break
      case '--keep': a.keep = true; break
      case '--regen': a.regen = true; break
      case '-h': case '--help': usage(); break
      default: usage(`unknown argument ${k}`)
    }
  }
  for (const w of a.only ?? []) if (!WORKLOADS.some((x) => x.name === w)) usage(`unknown workload ${w}`)
  for (const v of a.variants) if (!ALL_VARIANTS.includes(v)) usage(`unknown variant ${v}`)
  return a
}

/**
 * Deleting many files slows the creates of the next minute on ext4 without a journal (the
 * file system of the VMs this was measured on): to keep an inode deleted moments ago from
 * being reused before its deletion is on disk, inode allocation skips every inode whose
 * deletion time is under 60 s old (`recently_deleted()` in fs/ext4/ialloc.c; 5 more
 * minutes while its inode table block is dirty) and checks them one by one: measured here,
 * `tar x` of 10,000 files natively took 0.25 s, and 4-8 s right after 10,000 others were
 * deleted. Removing each run dir right after its run charged that to whichever variant came
 * next. So the run dirs of workloads that leave many files are removed at the end of the
 * run, then `sync`, and a workload that creates files starts at
 * least this long after the last such removal (waiting if needed, also across runs).
 */
const DELETE_SETTLE_MS = 65_000
/** Workloads whose timed part creates files (waits out DELETE_SETTLE_MS first). */
const CREATES = new Set(['seqwrite', 'untar', 'write1', 'git', 'make', 'compress'])
/** Workloads whose run dirs hold many files: removed at the end of the run; the others
 *  (few files, some of them big) right after each run. */
const MANY_FILES = new Set(['untar', 'git', 'make', 'compress'])

const MODES: Record<'quick' | 'full', { data: DataParams, p: ModeParams }> = {
  quick: {
    data: { treeFiles: 5000, bigBytes: 256 << 20, dirEntries: 10000, smallTarFiles: 2000, compBytes: 16 << 20, srcFull: false },
    p: { mounts: 1, warm: 3, writesPerMount: 2, writeBytes: 128 << 20, fioRuntime: 3, fioRuns: 3, readdirRuns: 20, gitStatusRuns: 3 }
  },
  full: {
    data: { treeFiles: 20000, bigBytes: 1 << 30, dirEntries: 10000, smallTarFiles: 10000, compBytes: 64 << 20, srcFull: true },
    p: { mounts: 3, warm: 2, writesPerMount: 1, writeBytes: 512 << 20, fioRuntime: 5, fioRuns: 2, readdirRuns: 30, gitStatusRuns: 5 }
  }
}

function cmdOut (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 })
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim()
}

function machine (work: string): Machine {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1].trim() ?? os.cpus()[0]?.model ?? '?'
  const mem = /MemTotal:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1]
  const first = (s: string, re: RegExp): string => re.exec(s)?.[1] ?? s.split('\n')[0]
  const fo = cmdOut('fuse-overlayfs', ['--version'])
  const dirty = cmdOut('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'native']).split('\n').filter((l) => l !== '').length
  return {
    hostname: os.hostname(),
    kernel: cmdOut('uname', ['-r']),
    cpuModel: cpu,
    cores: os.cpus().length,
    memTotalMiB: mem === undefined ? 0 : Math.round(parseInt(mem, 10) / 1024),
    disk: cmdOut('df', ['-hT', work]),
    loadStart: os.loadavg(),
    loadEnd: [],
    versions: {
      node: process.version,
      'fuse-overlayfs': first(fo, /fuse-overlayfs: version (\S+)/),
      'unionfs-fuse': first(cmdOut('unionfs', ['--version']), /unionfs-fuse version: (\S+)/),
      libfuse2: first(cmdOut('unionfs', ['--version']), /FUSE library version: (\S+)/),
      libfuse3: first(fo, /FUSE library version (\S+)/),
      fio: cmdOut('fio', ['--version']),
      hyperfine: cmdOut('hyperfine', ['--version']).replace('hyperfine ', ''),
      git: cmdOut('git', ['--version']).replace('git version ', ''),
      gcc: first(cmdOut('gcc', ['--version']), /\) (\S+)/),
      tar: first(cmdOut('tar', ['--version']), /tar \(GNU tar\) (\S+)/)
    },
    siblingfsCommit: `${cmdOut('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])}${dirty > 0 ? ` + ${dirty} uncommitted change(s) under src/ or native/` : ''}`
  }
}

/**
 * Copies the built siblingfs (dist/src, the native addon, package.json; node_modules linked)
 * into the work dir, so that the whole run measures one build even while others rebuild
 * dist/ (every `npm test` does). Returns the CLI path and a hash of the copied files.
 */
function snapshotBuild (work: string, stamp: string): { cli: string, hash: string, root: string } {
  const root = path.join(work, 'build-snapshots', stamp)
  fs.rmSync(root, { recursive: true, force: true })
  fs.mkdirSync(path.join(root, 'dist'), { recursive: true })
  fs.cpSync(path.join(REPO, 'dist', 'src'), path.join(root, 'dist', 'src'), { recursive: true })
  const addon = path.join(REPO, 'native', 'build', 'Release')
  if (fs.existsSync(addon)) fs.cpSync(addon, path.join(root, 'native', 'build', 'Release'), { recursive: true })
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(root, 'package.json'))
  // node_modules: links to the repo's packages, except fuse-native (patched and built here,
  // with C fast paths of ours): copied, so a rebuild during the run cannot change it.
  fs.mkdirSync(path.join(root, 'node_modules'))
  for (const e of fs.readdirSync(path.join(REPO, 'node_modules'))) {
    const src = path.join(REPO, 'node_modules', e)
    if (e === 'fuse-native') fs.cpSync(src, path.join(root, 'node_modules', e), { recursive: true })
    else fs.symlinkSync(src, path.join(root, 'node_modules', e))
  }
  const h = crypto.createHash('sha256')
  const rec = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) rec(p)
      else if (e.isFile() && !e.name.endsWith('.map')) { h.update(path.relative(root, p)); h.update(fs.readFileSync(p)) }
    }
  }
  rec(path.join(root, 'dist'))
  rec(path.join(root, 'node_modules', 'fuse-native', 'build', 'Release'))
  // Older snapshots are not needed.
  for (const e of fs.readdirSync(path.dirname(root))) if (e !== stamp) fs.rmSync(path.join(path.dirname(root), e), { recursive: true, force: true })
  return { cli: path.join(root, 'dist', 'src', 'cli', 'main.js'), hash: h.digest('hex').slice(0, 12), root }
}

function under (dir: string): string[] { return mountedPaths().filter((p) => p === dir || p.startsWith(dir + '/')) }

function fmtElapsed (ms: number): string {
  const s = Math.floor(ms / 1000)
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  installCleanupHandlers()
  if (process.getuid?.() !== 0) usage('must run as root (mounts, drop_caches)')
  const mode = args.quick ? 'quick' : 'full'
  const { data: dataParams, p } = MODES[mode]
  const t0 = Date.now()
  const started = new Date()
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')
  const log = (s: string): void => { process.stdout.write(`[${fmtElapsed(Date.now() - t0)}] ${s}\n`) }

  fs.mkdirSync(args.work, { recursive: true })
  fs.mkdirSync(args.out, { recursive: true })
  // One bench at a time per work dir.
  const lock = path.join(args.work, 'bench.lock')
  try {
    const other = parseInt(fs.readFileSync(lock, 'utf8'), 10)
    if (Number.isFinite(other) && other !== process.pid && alive(other)) usage(`another bench (pid ${other}) uses ${args.work}`)
  } catch { /* no lock */ }
  fs.writeFileSync(lock, String(process.pid))
  process.on('exit', () => { try { if (fs.readFileSync(lock, 'utf8') === String(process.pid)) fs.rmSync(lock) } catch { /* gone */ } })
  // Mounts left under the work dir by an earlier, killed bench run.
  for (const m of under(args.work).reverse()) {
    log(`detaching a stale mount from an earlier run: ${m}`)
    spawnSync('fusermount', ['-u', '-z', m], { stdio: 'ignore' })
    if (under(m).length > 0) spawnSync('umount', ['-l', m], { stdio: 'ignore' })
  }
  const runsDir = path.join(args.work, 'runs')
  const logDir = path.join(args.work, 'logs', stamp)
  const home = path.join(args.work, 'home')
  // Mass deletes and the creates after them (see DELETE_SETTLE_MS): the time of the last
  // one is kept in the work dir, so that a run started right after another waits it out.
  const deletedFile = path.join(args.work, 'last-mass-delete')
  let lastMassDelete = 0
  try { lastMassDelete = Number(fs.readFileSync(deletedFile, 'utf8')) || 0 } catch { /* none yet */ }
  const massDelete = (dirs: string[]): void => {
    if (dirs.length === 0) return
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
    spawnSync('sync')
    lastMassDelete = Date.now()
    fs.writeFileSync(deletedFile, String(lastMassDelete))
  }
  const settleDeletes = async (): Promise<void> => {
    const wait = lastMassDelete + DELETE_SETTLE_MS - Date.now()
    if (wait <= 0) return
    log(`waiting ${(wait / 1000).toFixed(0)} s: files deleted less than ${DELETE_SETTLE_MS / 1000} s ago slow down creates (ext4 without a journal, see DELETE_SETTLE_MS)`)
    await new Promise((resolve) => setTimeout(resolve, wait))
  }
  if (fs.existsSync(runsDir)) massDelete(fs.readdirSync(runsDir).map((e) => path.join(runsDir, e)))
  for (const d of [runsDir, logDir, home]) fs.mkdirSync(d, { recursive: true })
  /** Run dirs with many files, removed at the end of the run (see DELETE_SETTLE_MS). */
  const deferred: string[] = []

  const mach = machine(args.work)
  log(`machine: ${mach.cpuModel}, ${mach.cores} cores, ${mach.memTotalMiB} MiB, kernel ${mach.kernel}, load ${mach.loadStart.map((x) => x.toFixed(2)).join(' ')}`)
  const data = ensureData(args.work, mode, dataParams, REPO, args.regen, log)
  const fpBefore = hostFingerprint(data)

  const snap = snapshotBuild(args.work, stamp)
  mach.siblingfsCommit += `, build snapshot ${snap.hash}`
  log(`siblingfs under test: ${mach.siblingfsCommit} (copied to ${snap.root})`)
  const env: VariantEnv = { repo: REPO, cli: snap.cli, logDir }
  const variants: Report['variants'] = []
  for (const name of args.variants) {
    const scratch = path.join(args.work, 'probe', name)
    fs.rmSync(scratch, { recursive: true, force: true })
    fs.mkdirSync(scratch, { recursive: true })
    let note: string | null
    try { note = await VARIANTS[name].probe(env, scratch) } catch (err) { note = `probe failed: ${err instanceof Error ? err.message : String(err)}` }
    if (under(scratch).length === 0) fs.rmSync(scratch, { recursive: true, force: true })
    variants.push({ name, status: note === null ? 'ok' : 'skipped', note: note ?? '' })
    log(`variant ${name}: ${note === null ? 'ok' : `SKIPPED (${note})`}`)
  }
  const active = variants.filter((v) => v.status === 'ok').map((v) => v.name as VariantName)

  const workloads = WORKLOADS.filter((w) => args.only === null || args.only.includes(w.name))
  const results: Report['results'] = {}
  const rss: Report['rss'] = {}
  const load: Report['load'] = []
  const warnings: string[] = []
  const cell = (metric: string, v: string): Cell => { results[metric] ??= {}; return (results[metric][v] ??= makeCell()) }
  const gitEnv: NodeJS.ProcessEnv = {
    ...process.env, HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@example.com', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@example.com'
  }
  let dropOk = true
  const dropCaches = async (): Promise<void> => {
    await must(run('sync', []), 'sync')
    try { fs.writeFileSync('/proc/sys/vm/drop_caches', '3') } catch (err) {
      if (dropOk) warnings.push(`drop_caches failed (${String(err)}): "cold" rows are not cold`)
      dropOk = false
    }
  }

  for (const w of workloads) {
    const la = os.loadavg()
    load.push({ at: new Date().toISOString(), workload: w.name, load1: la[0], load5: la[1], load15: la[2] })
    if (CREATES.has(w.name)) await settleDeletes()
    log(`== ${w.name} (load ${la[0].toFixed(2)})`)
    rss[w.name] = {}
    for (const def of w.metrics) for (const v of active) cell(def.id, v)
    const failed = new Set<VariantName>()
    for (let rep = 1; rep <= p.mounts; rep++) {
      for (const v of active) {
        if (failed.has(v)) continue
        const runDir = path.join(runsDir, `${w.name}-${v}-r${rep}`)
        if (under(runDir).length > 0) throw new Error(`${runDir} still has mounts: ${under(runDir).join(', ')}`)
        fs.rmSync(runDir, { recursive: true, force: true })
        fs.mkdirSync(runDir, { recursive: true })
        const got: string[] = []
        const ctx: Ctx = {
          data, p, gitEnv, variant: v, runDir, log, dropCaches,
          record: (metric, value) => { cell(metric, v).samples.push(value); got.push(`${metric}=${value.toFixed(value < 10 ? 2 : 0)}`) },
          note: (metric, text) => { cell(metric, v).notes.push(text) },
          withMount: async (fn) => {
            const mt = await VARIANTS[v].mount(env, data.host, runDir)
            try { return await fn(mt) } finally {
              await mt.unmount()
              if (mt.peakRssKiB !== null) (rss[w.name][v] ??= []).push(mt.peakRssKiB)
            }
          }
        }
        const tr = Date.now()
        try {
          await w.run(ctx)
          log(`${w.name} r${rep}/${p.mounts} ${v}: ${got.join(' ')} (${((Date.now() - tr) / 1000).toFixed(1)} s)`)
        } catch (err) {
          const msg = err instanceof Error ? err.message : String(err)
          log(`${w.name} r${rep}/${p.mounts} ${v}: ERROR ${msg}`)
          for (const def of w.metrics) cell(def.id, v).errors.push(`rep ${rep}: ${msg}`)
          failed.add(v)
        } finally {
          const left = under(runDir)
          if (left.length > 0) {
            warnings.push(`mounts left under ${runDir} after ${w.name}/${v}: ${left.join(', ')} (detached)`)
            for (const m of left.reverse()) { spawnSync('fusermount', ['-u', '-z', m], { stdio: 'ignore' }); spawnSync('umount', ['-l', m], { stdio: 'ignore' }) }
          }
          if (!args.keep && under(runDir).length === 0) {
            if (MANY_FILES.has(w.name)) deferred.push(runDir)
            else fs.rmSync(runDir, { recursive: true, force: true })
          }
        }
      }
    }
  }

  massDelete(deferred)
  const fpAfter = hostFingerprint(data)
  const hostUnchanged = fpAfter === fpBefore
  if (!hostUnchanged) warnings.push(`THE HOST DATA SET CHANGED during the run: before ${fpBefore}, after ${fpAfter}`)
  mach.loadEnd = os.loadavg()
  for (const byV of Object.values(results)) for (const c of Object.values(byV)) finishCell(c)
  const finished = new Date()
  const report: Report = {
    schema: 1,
    started: started.toISOString(),
    finished: finished.toISOString(),
    durationSeconds: (finished.getTime() - started.getTime()) / 1000,
    command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
    mode,
    machine: mach,
    params: p,
    dataset: {
      treeFiles: data.treeFileCount, treeBytes: data.treeBytes, bigBytes: data.params.bigBytes, dirEntries: data.params.dirEntries,
      smallTarFiles: data.smallTarFileCount, srcFiles: data.srcFileCount, srcBytes: data.srcBytes,
      compFiles: data.compFileCount, compBytes: data.compBytes, compLz4RefRatio: data.compLz4RefRatio,
      writeBytes: p.writeBytes, generatedAt: data.generatedAt, root: data.root
    },
    variants,
    workloads: workloads.map((w) => ({ name: w.name, what: w.what })),
    metrics: workloads.flatMap((w) => w.metrics),
    results,
    rss,
    load,
    hostUnchanged,
    warnings
  }
  const jsonName = `${stamp}${args.quick ? '-quick' : ''}.json`
  fs.writeFileSync(path.join(args.out, jsonName), JSON.stringify(report, null, 2))
  fs.writeFileSync(path.join(args.out, 'latest.md'), renderMarkdown(report, jsonName))
  fs.writeFileSync(path.join(args.out, 'latest.svg'), renderSvg(report))
  log(`wrote ${path.join(args.out, jsonName)}, latest.md, latest.svg`)
  process.stdout.write('\n' + renderMarkdown(report, jsonName).split('\n## Daemon')[0] + '\n')
  const left = under(args.work)
  if (left.length > 0) { log(`ERROR: mounts left: ${left.join(', ')}`); process.exitCode = 1 }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exitCode = 1
})

/**
 * Turning a run's raw results into something to read: the Markdown table and the SVG chart.
 *
 * Owns: the report's data shape (`Report`, also the JSON written to bench/results/), number
 * formatting, the "better factor" used in every ratio (>1 means siblingfs is better: faster,
 * or a smaller store), and the hand-written SVG (grouped bars per workload, normalised to
 * native = 1 on a log scale, diverging from the native line; store costs in a second panel).
 * Does not: run or time anything.
 */
import type { MetricDef, ModeParams } from './workloads.js'

export interface Cell {
  samples: number[]
  median: number | null
  min: number | null
  max: number | null
  errors: string[]
  notes: string[]
}

export interface Machine {
  hostname: string
  kernel: string
  cpuModel: string
  cores: number
  memTotalMiB: number
  disk: string
  loadStart: number[]
  loadEnd: number[]
  versions: Record<string, string>
  siblingfsCommit: string
}

export interface Report {
  schema: 1
  started: string
  finished: string
  durationSeconds: number
  command: string
  mode: 'quick' | 'full'
  machine: Machine
  params: ModeParams
  dataset: Record<string, unknown>
  variants: Array<{ name: string, status: 'ok' | 'skipped', note: string }>
  workloads: Array<{ name: string, what: string }>
  metrics: MetricDef[]
  /** metric id → variant → cell */
  results: Record<string, Record<string, Cell>>
  /** workload → variant → peak RSS (KiB) of each daemon started */
  rss: Record<string, Record<string, number[]>>
  load: Array<{ at: string, workload: string, load1: number, load5: number, load15: number }>
  hostUnchanged: boolean
  warnings: string[]
}

export function median (xs: number[]): number | null {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const h = s.length >> 1
  return s.length % 2 === 1 ? s[h] : (s[h - 1] + s[h]) / 2
}

export function makeCell (): Cell { return { samples: [], median: null, min: null, max: null, errors: [], notes: [] } }

export function finishCell (c: Cell): void {
  c.median = median(c.samples)
  c.min = c.samples.length > 0 ? Math.min(...c.samples) : null
  c.max = c.samples.length > 0 ? Math.max(...c.samples) : null
}

/** How many times better `a` is than `b` (>1: a is better), by the metric's direction. */
export function betterFactor (def: MetricDef, a: number | null, b: number | null): number | null {
  if (a === null || b === null) return null
  if (def.better === 'higher') return b === 0 ? null : a / b
  return a === 0 ? (b === 0 ? 1 : Infinity) : b / a
}

export function fmtNum (v: number): string {
  const a = Math.abs(v)
  if (a >= 100) return Math.round(v).toLocaleString('en-US')
  if (a >= 10) return v.toFixed(1)
  if (a >= 1) return v.toFixed(2)
  if (a === 0) return '0'
  return v.toPrecision(2)
}

export function fmtBytes (v: number): string {
  const a = Math.abs(v)
  if (a >= 1 << 30) return `${(v / (1 << 30)).toFixed(2)} GiB`
  if (a >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`
  if (a >= 1 << 10) return `${(v / (1 << 10)).toFixed(0)} KiB`
  return `${v} B`
}

function fmtVal (def: MetricDef, v: number): string {
  if (def.unit === 'bytes') return fmtBytes(v)
  if (def.unit === '%') return `${v.toFixed(1)}%`
  return fmtNum(v)
}

export function fmtFactor (f: number | null): string {
  if (f === null) return '—'
  if (!Number.isFinite(f)) return '∞'
  if (f >= 100) return `${Math.round(f).toLocaleString('en-US')}×`
  if (f >= 10) return `${f.toFixed(1)}×`
  if (f >= 0.01) return `${f.toFixed(2)}×`
  return `${f.toPrecision(1)}×`
}

function cellText (def: MetricDef, c: Cell | undefined, skipped: string | undefined): string {
  if (skipped !== undefined) return 'n/a'
  if (c === undefined) return '—'
  if (c.median === null) return c.errors.length > 0 ? '**error**' : '—'
  let s = fmtVal(def, c.median)
  if (c.samples.length > 1 && c.min !== null && c.max !== null) s += ` [${fmtVal(def, c.min)}–${fmtVal(def, c.max)}]`
  if (c.errors.length > 0) s += ' (+error)'
  return s
}

function mdEscape (s: string): string { return s.replace(/\|/g, '\\|').replace(/\n/g, ' ') }

export function renderMarkdown (r: Report, jsonName: string): string {
  const vs = r.variants.filter((v) => v.status === 'ok').map((v) => v.name)
  const has = (n: string): boolean => vs.includes(n)
  const L: string[] = []
  const mc = r.machine
  L.push(`# siblingfs benchmark — ${r.mode} run, ${r.started.slice(0, 16).replace('T', ' ')} UTC`, '')
  L.push(`Command: \`${r.command}\` · duration ${(r.durationSeconds / 60).toFixed(1)} min · raw data: \`${jsonName}\``, '')
  L.push(`Machine: ${mc.cpuModel}, ${mc.cores} cores, ${mc.memTotalMiB.toLocaleString('en-US')} MiB RAM, kernel ${mc.kernel}; ` +
    `load average at start ${mc.loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${mc.loadEnd.map((x) => x.toFixed(2)).join(' ')}` +
    ` (max 1-min load seen between workloads: ${Math.max(...r.load.map((l) => l.load1), ...mc.loadStart.slice(0, 1)).toFixed(2)}).`, '')
  L.push(`Versions: ${Object.entries(mc.versions).map(([k, v]) => `${k} ${v}`).join(', ')}; siblingfs ${mc.siblingfsCommit}.`, '')
  const ds = r.dataset as Record<string, number | string | null>
  const n = (k: string): string => typeof ds[k] === 'number' ? (ds[k] as number).toLocaleString('en-US') : '?'
  const b = (k: string): string => typeof ds[k] === 'number' ? fmtBytes(ds[k] as number) : '?'
  L.push(`Data: a tree of ${n('treeFiles')} files (${b('treeBytes')}), a ${b('bigBytes')} file, a directory of ${n('dirEntries')} entries, ` +
    `a tar of ${n('smallTarFiles')} small files, a source tree of ${n('srcFiles')} files (${b('srcBytes')}), a compressible tree of ${n('compFiles')} files (${b('compBytes')}; ` +
    `the lz4 codec alone, one frame per whole file, makes it ${typeof ds.compLz4RefRatio === 'number' ? (100 * ds.compLz4RefRatio).toFixed(1) + '%' : '?'} of its size), writes of ${b('writeBytes')}.`, '')
  const skipped = r.variants.filter((v) => v.status === 'skipped')
  if (skipped.length > 0) L.push(`Skipped variants: ${skipped.map((v) => `**${v.name}** (${v.note})`).join('; ')}.`, '')
  L.push(`Cells: median [min–max] over ${r.params.mounts} fresh mount(s) per variant` +
    ` (cold: 1 run per mount; warm: ${r.params.warm} per mount). Ratio columns: how many times *better* siblingfs is (>1 = faster, or a smaller store; <1 = slower/bigger), from the medians.`, '')
  const head = ['workload', 'unit', ...vs]
  if (has('siblingfs') && has('native')) head.push('siblingfs vs native')
  if (has('siblingfs') && has('fuse-overlayfs')) head.push('siblingfs vs fuse-overlayfs')
  if (has('siblingfs-lz4') && has('siblingfs')) head.push('lz4 vs siblingfs')
  L.push(`| ${head.join(' | ')} |`, `|${head.map((_, i) => i < 2 ? '---' : '---:').join('|')}|`)
  for (const def of r.metrics) {
    const row = r.results[def.id] ?? {}
    const cells = [mdEscape(def.label), `${def.unit}${def.better === 'higher' ? ' ↑' : ' ↓'}`]
    for (const v of vs) cells.push(cellText(def, row[v], undefined))
    const med = (v: string): number | null => row[v]?.median ?? null
    if (has('siblingfs') && has('native')) cells.push(def.kind === 'size' ? '—' : fmtFactor(betterFactor(def, med('siblingfs'), med('native'))))
    if (has('siblingfs') && has('fuse-overlayfs')) cells.push(fmtFactor(betterFactor(def, med('siblingfs'), med('fuse-overlayfs'))))
    if (has('siblingfs-lz4') && has('siblingfs')) cells.push(fmtFactor(betterFactor(def, med('siblingfs-lz4'), med('siblingfs'))))
    L.push(`| ${cells.join(' | ')} |`)
  }
  L.push('', '↑ higher is better, ↓ lower is better. MB = 10⁶ bytes. "n/a": the variant does not apply; "—": not measured.', '')
  // Peak RSS
  const daemons = vs.filter((v) => v !== 'native' && v !== 'overlayfs')
  if (daemons.length > 0) {
    L.push('## Daemon peak RSS (VmHWM just before unmount, MiB; largest over the mounts of each workload)', '')
    L.push(`| workload | ${daemons.join(' | ')} |`, `|---|${daemons.map(() => '---:').join('|')}|`)
    for (const w of r.workloads) {
      const row = r.rss[w.name] ?? {}
      if (daemons.every((d) => (row[d] ?? []).length === 0)) continue
      L.push(`| ${w.name} | ${daemons.map((d) => (row[d] ?? []).length > 0 ? (Math.max(...row[d]) / 1024).toFixed(0) : '—').join(' | ')} |`)
    }
    L.push('')
  }
  // Errors and notes
  const errs: string[] = []
  const notes: string[] = []
  for (const def of r.metrics) {
    for (const [v, c] of Object.entries(r.results[def.id] ?? {})) {
      for (const e of c.errors) errs.push(`- ${def.id} / ${v}: ${mdEscape(e)}`)
      for (const n of [...new Set(c.notes)]) notes.push(`- ${def.id} / ${v}: ${mdEscape(n)}`)
    }
  }
  if (errs.length > 0) L.push('## Errors', '', ...[...new Set(errs)], '')
  if (notes.length > 0) L.push('## Notes', '', ...notes.slice(0, 60), '')
  if (r.warnings.length > 0) L.push('## Warnings', '', ...r.warnings.map((w) => `- ${w}`), '')
  L.push('## Load average before each workload', '', r.load.map((l) => `${l.workload} ${l.load1.toFixed(2)}`).join(' · '), '')
  L.push('## Workloads', '', ...r.workloads.map((w) => `- **${w.name}**: ${mdEscape(w.what)}`), '')
  return L.join('\n')
}

// ---------------------------------------------------------------- SVG

const COLORS: Record<string, string> = {
  native: '#222222',
  overlayfs: '#8c8c8c',
  'fuse-overlayfs': '#1f77b4',
  'unionfs-fuse': '#9467bd',
  siblingfs: '#d62728',
  'siblingfs-lz4': '#ff7f0e',
  'siblingfs-1s': '#f4a3a3',
  'siblingfs-nospin': '#8c564b',
  'siblingfs-spin': '#8c564b'
}

function esc (s: string): string { return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;') }

function ticks125 (lo: number, hi: number): number[] {
  const out: number[] = []
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v)
    }
  }
  return out
}

function tickLabel (v: number): string {
  if (v >= 1) return `${v.toLocaleString('en-US')}×`
  return `${Number(v.toPrecision(1))}×`
}

interface Bar { variant: string, value: number | null, lo: number | null, hi: number | null, label: string }

export function renderSvg (r: Report): string {
  const vs = r.variants.filter((v) => v.status === 'ok').map((v) => v.name)
  const peers = vs.filter((v) => v !== 'native')
  const W = 1040; const labelW = 300; const x0 = labelW + 20; const x1 = W - 110
  const barH = 11; const gap = 3; const groupPad = 12
  const out: string[] = []
  let y = 0
  const line = (s: string): void => { out.push(s) }

  // Title and legend
  y = 30
  line(`<text x="20" y="${y}" font-size="19" font-weight="bold">siblingfs vs its peers — speed relative to native (native = 1)</text>`)
  y += 20
  const mc = r.machine
  line(`<text x="20" y="${y}" font-size="12" fill="#444">${esc(`${r.mode} run ${r.started.slice(0, 16).replace('T', ' ')} UTC · ${mc.cpuModel}, ${mc.cores} cores, kernel ${mc.kernel} · load avg ${mc.loadStart[0].toFixed(2)} → ${mc.loadEnd[0].toFixed(2)} (shared machine: compare within this chart only)`)}</text>`)
  y += 18
  line(`<text x="20" y="${y}" font-size="12" fill="#444">Bars start at the native line: right = faster than native, left = slower. Log scale. Whiskers: min–max over repetitions. Label: median ratio.</text>`)
  y += 22
  let lx = 20
  for (const v of peers) {
    line(`<rect x="${lx}" y="${y - 10}" width="14" height="11" fill="${COLORS[v] ?? '#000'}"/><text x="${lx + 19}" y="${y}" font-size="12"${v === 'siblingfs' ? ' font-weight="bold"' : ''}>${esc(v)}</text>`)
    lx += 30 + v.length * 7.5
  }
  line(`<line x1="${lx}" y1="${y - 11}" x2="${lx}" y2="${y + 2}" stroke="#000" stroke-width="2"/><text x="${lx + 6}" y="${y}" font-size="12">native = 1</text>`)
  y += 18

  // Panel 1: speed
  const speed = r.metrics.filter((d) => d.kind === 'speed')
  const groups: Array<{ def: MetricDef, bars: Bar[] }> = []
  let lo = 0.5; let hi = 2
  for (const def of speed) {
    const row = r.results[def.id] ?? {}
    const nat = row.native?.median ?? null
    const bars: Bar[] = []
    for (const v of peers) {
      const c = row[v]
      if (c === undefined) { bars.push({ variant: v, value: null, lo: null, hi: null, label: 'n/a' }); continue }
      const f = betterFactor(def, c.median, nat)
      if (f === null || !Number.isFinite(f) || f <= 0) {
        bars.push({ variant: v, value: null, lo: null, hi: null, label: c.errors.length > 0 ? 'error' : nat === null ? 'no native value' : 'n/a' })
        continue
      }
      const a = betterFactor(def, c.min, nat); const b = betterFactor(def, c.max, nat)
      const fl = a !== null && b !== null ? Math.min(a, b) : null; const fh = a !== null && b !== null ? Math.max(a, b) : null
      bars.push({ variant: v, value: f, lo: fl, hi: fh, label: fmtFactor(f) })
      for (const x of [f, fl, fh]) if (x !== null && Number.isFinite(x) && x > 0) { lo = Math.min(lo, x); hi = Math.max(hi, x) }
    }
    groups.push({ def, bars })
  }
  lo = 10 ** Math.floor(Math.log10(lo)); hi = 10 ** Math.ceil(Math.log10(hi))
  const sx = (v: number): number => x0 + (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * (x1 - x0)
  const panelTop = y + 10
  const groupH = peers.length * (barH + gap) + groupPad
  const panelH = groups.length * groupH
  // grid
  y = panelTop + 14
  for (const t of ticks125(lo, hi)) {
    const major = Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9
    line(`<line x1="${sx(t).toFixed(1)}" y1="${y}" x2="${sx(t).toFixed(1)}" y2="${y + panelH}" stroke="${major ? '#ccc' : '#eee'}"/>`)
    if (major || ticks125(lo, hi).length < 14) line(`<text x="${sx(t).toFixed(1)}" y="${y - 3}" font-size="10" text-anchor="middle" fill="#666">${tickLabel(t)}</text>`)
  }
  groups.forEach((g, gi) => {
    const gy = y + gi * groupH
    if (gi % 2 === 0) line(`<rect x="10" y="${gy}" width="${W - 20}" height="${groupH}" fill="#f6f6f6"/>`)
    const unit = g.def.better === 'higher' ? g.def.unit : `${g.def.unit}, lower is better`
    line(`<text x="${labelW + 8}" y="${gy + groupH / 2 - 2}" font-size="12" text-anchor="end">${esc(g.def.label)}</text>`)
    const nat = r.results[g.def.id]?.native?.median
    line(`<text x="${labelW + 8}" y="${gy + groupH / 2 + 12}" font-size="10" fill="#777" text-anchor="end">${esc(`native ${nat !== undefined && nat !== null ? fmtNum(nat) : '?'} ${unit}`)}</text>`)
    g.bars.forEach((b, bi) => {
      const by = gy + groupPad / 2 + bi * (barH + gap)
      const col = COLORS[b.variant] ?? '#000'
      if (b.value === null) {
        line(`<text x="${sx(1) + 4}" y="${by + barH - 2}" font-size="10" fill="${b.label === 'error' ? '#c00' : '#999'}" font-style="italic">${esc(`${b.variant}: ${b.label}`)}</text>`)
        return
      }
      const xa = Math.min(sx(1), sx(b.value)); const xb = Math.max(sx(1), sx(b.value))
      line(`<rect x="${xa.toFixed(1)}" y="${by}" width="${Math.max(1, xb - xa).toFixed(1)}" height="${barH}" fill="${col}"${b.variant === 'siblingfs' ? ' stroke="#000" stroke-width="0.8"' : ''}/>`)
      if (b.lo !== null && b.hi !== null && b.hi / b.lo > 1.02) {
        const m = by + barH / 2
        line(`<line x1="${sx(b.lo).toFixed(1)}" y1="${m}" x2="${sx(b.hi).toFixed(1)}" y2="${m}" stroke="#000" stroke-width="0.8" opacity="0.6"/>`)
      }
      const right = b.value >= 1
      const tx = right ? Math.max(xb, b.hi !== null ? sx(b.hi) : xb) + 4 : Math.min(xa, b.lo !== null ? sx(b.lo) : xa) - 4
      line(`<text x="${tx.toFixed(1)}" y="${by + barH - 1}" font-size="10" text-anchor="${right ? 'start' : 'end'}"${b.variant === 'siblingfs' ? ' font-weight="bold"' : ''}>${b.label}</text>`)
    })
  })
  line(`<line x1="${sx(1).toFixed(1)}" y1="${y - 2}" x2="${sx(1).toFixed(1)}" y2="${y + panelH}" stroke="#000" stroke-width="2"/>`)
  y += panelH + 40

  // Panel 2: store cost
  const sizeRows: Array<{ def: MetricDef, log: boolean, target: number | null, targetLabel: string }> = []
  for (const def of r.metrics.filter((d) => d.kind === 'size')) {
    if (def.id === 'write1-growth') sizeRows.push({ def, log: true, target: 256 * 1024, targetLabel: 'siblingfs target 256 KiB' })
    else if (def.id === 'comp-ratio') sizeRows.push({ def, log: false, target: 45, targetLabel: 'lz4 target 45%' })
  }
  for (const sr of sizeRows) {
    const row = r.results[sr.def.id] ?? {}
    const rows = vs.filter((v) => row[v] !== undefined)
    if (rows.length === 0) continue
    line(`<text x="20" y="${y}" font-size="15" font-weight="bold">${esc(sr.def.id === 'write1-growth' ? 'Store growth after writing 1 byte into the big host file (allocated bytes, log scale; lower is better)' : 'Compressible tree written into the mount: store growth / raw size (allocated; lower is better)')}</text>`)
    y += 14
    const vals = rows.map((v) => row[v].median).filter((x): x is number => x !== null)
    let slo: number; let shi: number
    if (sr.log) {
      slo = 1024; shi = Math.max(2 ** 31, ...vals.map((v) => v * 1.5))
    } else { slo = 0; shi = Math.max(120, ...vals.map((v) => v * 1.1)) }
    const tx = (v: number): number => sr.log
      ? x0 + (Math.log2(Math.max(v, slo)) - Math.log2(slo)) / (Math.log2(shi) - Math.log2(slo)) * (x1 - x0)
      : x0 + (v - slo) / (shi - slo) * (x1 - x0)
    const h = rows.length * (barH + gap + 2) + 8
    const tks = sr.log ? [1024, 64 * 1024, 1 << 20, 16 << 20, 256 << 20, 1 << 30].filter((t) => t <= shi) : [0, 20, 40, 60, 80, 100, 120].filter((t) => t <= shi)
    y += 12
    for (const t of tks) {
      line(`<line x1="${tx(t).toFixed(1)}" y1="${y}" x2="${tx(t).toFixed(1)}" y2="${y + h}" stroke="#e4e4e4"/>`)
      line(`<text x="${tx(t).toFixed(1)}" y="${y - 3}" font-size="10" text-anchor="middle" fill="#666">${sr.log ? fmtBytes(t) : `${t}%`}</text>`)
    }
    rows.forEach((v, i) => {
      const by = y + 4 + i * (barH + gap + 2)
      const c = row[v]
      line(`<text x="${labelW + 8}" y="${by + barH - 1}" font-size="11" text-anchor="end">${esc(v)}</text>`)
      if (c.median === null) {
        line(`<text x="${x0 + 4}" y="${by + barH - 1}" font-size="10" fill="#c00" font-style="italic">${c.errors.length > 0 ? 'error' : 'n/a'}</text>`)
        return
      }
      const w = Math.max(1, tx(c.median) - x0)
      line(`<rect x="${x0}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[v] ?? '#000'}"/>`)
      line(`<text x="${(x0 + w + 4).toFixed(1)}" y="${by + barH - 1}" font-size="10"${v.startsWith('siblingfs') ? ' font-weight="bold"' : ''}>${esc(sr.log ? fmtBytes(c.median) : `${c.median.toFixed(1)}%`)}</text>`)
    })
    if (sr.target !== null) {
      line(`<line x1="${tx(sr.target).toFixed(1)}" y1="${y - 2}" x2="${tx(sr.target).toFixed(1)}" y2="${y + h}" stroke="#d62728" stroke-dasharray="4 3"/>`)
      line(`<text x="${(tx(sr.target) + 3).toFixed(1)}" y="${y + h + 11}" font-size="10" fill="#d62728">${esc(sr.targetLabel)}</text>`)
    }
    y += h + 34
  }
  const H = y + 10
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">\n` +
    `<rect width="${W}" height="${H}" fill="#fff"/>\n${out.join('\n')}\n</svg>\n`
}

/**
 * Printing command results. Command handlers return data; only this module writes it out.
 */
import type { Change, DiffSummary } from '../tools/diff.js'

export function printLine (s: string): void {
  process.stdout.write(s + '\n')
}

export function printErrorLine (s: string): void {
  process.stderr.write(s + '\n')
}

const SIGN: Record<Change['kind'], string> = { added: 'A', modified: 'M', meta: 'm', deleted: 'D', renamed: 'R', replaced: 'X' }

export function formatChanges (changes: Change[]): string {
  return changes.map(c => `${SIGN[c.kind]} ${c.path}${c.type === 'dir' ? '/' : ''}${c.from !== undefined ? ` (from ${c.from})` : ''}`).join('\n')
}

export function formatSummary (s: DiffSummary): string {
  const parts = [`${s.added} added`, `${s.modified} modified`, `${s.deleted} deleted`]
  if (s.renamed > 0) parts.push(`${s.renamed} renamed`)
  if (s.replaced > 0) parts.push(`${s.replaced} replaced`)
  if (s.meta > 0) parts.push(`${s.meta} with new metadata`)
  return parts.join(', ')
}

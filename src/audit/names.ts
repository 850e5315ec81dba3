import type Database from 'better-sqlite3';

/**
 * The `names` table: every SPIFFE ID and node name stored once, referenced from events by id.
 * Rows are never deleted and ids (AUTOINCREMENT) never reused, so a pair read once stays true for
 * the life of the file: every connection, in any thread or process, may cache it. Values inserted inside a
 * transaction are remembered as pending until commit() or forgotten by rollback(), so a failed
 * append never leaves the cache pointing at a row that does not exist.
 */
export class NameTable {
  private readonly byValue = new Map<string, number>();
  private readonly byId = new Map<number, string>();
  private pending: string[] = [];
  private readonly selectByValue: Database.Statement;
  private readonly selectById: Database.Statement;
  private readonly selectAll: Database.Statement;
  private readonly insert: Database.Statement | undefined;

  constructor(db: Database.Database, writable: boolean) {
    this.selectByValue = db.prepare('SELECT id FROM names WHERE value = ?');
    this.selectById = db.prepare('SELECT value FROM names WHERE id = ?');
    this.selectAll = db.prepare('SELECT id, value FROM names');
    this.insert = writable ? db.prepare('INSERT INTO names (value) VALUES (?)') : undefined;
  }

  /** Id of value, inserting it when new. Call inside the append transaction. */
  intern(value: string): number {
    const known = this.find(value);
    if (known !== undefined) return known;
    if (!this.insert) throw new Error('names: intern on a read-only store');
    const id = Number(this.insert.run(value).lastInsertRowid);
    this.pending.push(value);
    this.remember(value, id);
    return id;
  }

  /** Id of an existing value, or undefined when no event ever named it. */
  find(value: string): number | undefined {
    const cached = this.byValue.get(value);
    if (cached !== undefined) return cached;
    const row = this.selectByValue.get(value) as { id: number } | undefined;
    if (row === undefined) return undefined;
    this.remember(value, row.id);
    return row.id;
  }

  /** Value of an id (undefined when the row is gone: the file was edited). */
  value(id: number): string | undefined {
    const cached = this.byId.get(id);
    if (cached !== undefined) return cached;
    const row = this.selectById.get(id) as { value: string } | undefined;
    if (row === undefined) return undefined;
    this.remember(row.value, id);
    return row.value;
  }

  /** The whole table as stored now, bypassing the cache (verification reads what is on disk). */
  snapshot(): Map<number, string> {
    const out = new Map<number, string>();
    for (const r of this.selectAll.iterate() as IterableIterator<{ id: number; value: string }>) {
      out.set(r.id, r.value);
    }
    return out;
  }

  commit(): void {
    this.pending = [];
  }

  rollback(): void {
    for (const v of this.pending) {
      const id = this.byValue.get(v);
      this.byValue.delete(v);
      if (id !== undefined) this.byId.delete(id);
    }
    this.pending = [];
  }

  private remember(value: string, id: number): void {
    this.byValue.set(value, id);
    this.byId.set(id, value);
  }
}

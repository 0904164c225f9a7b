/**
 * A windowed (virtualised) list: only the rows inside the viewport, plus a
 * small margin, exist in the DOM, so ten thousand entries cost as much as
 * thirty. Rows have one fixed height; a spacer element gives the scrollbar
 * the full length. Items come from a `RowSource`, which may load pages lazily.
 */

export interface RowSource<T> {
  /** How many rows there are in all. */
  readonly total: number;
  /** The item at `index`, or undefined while its page is still loading. */
  item(index: number): T | undefined;
  /** Makes sure rows [start, end) are loaded; resolves when they are. */
  ensure(start: number, end: number): Promise<void>;
}

/** A source over an array already in memory. */
export class ArraySource<T> implements RowSource<T> {
  constructor(private readonly items: T[]) {}
  get total(): number {
    return this.items.length;
  }
  item(index: number): T | undefined {
    return this.items[index];
  }
  async ensure(): Promise<void> {
    return;
  }
}

/**
 * A source that fetches fixed-size pages on demand and keeps them.
 * `fetchPage(offset, limit)` returns the items and the total at that moment.
 */
export class PagedSource<T> implements RowSource<T> {
  private pages = new Map<number, T[]>();
  private pending = new Map<number, Promise<void>>();
  private count = 0;

  constructor(
    private readonly fetchPage: (offset: number, limit: number) => Promise<{ items: T[]; total: number }>,
    readonly pageSize = 200
  ) {}

  get total(): number {
    return this.count;
  }

  /** Loads the first page (and so the total). */
  async start(): Promise<void> {
    this.pages.clear();
    this.pending.clear();
    await this.load(0);
  }

  item(index: number): T | undefined {
    const page = this.pages.get(Math.floor(index / this.pageSize));
    return page ? page[index % this.pageSize] : undefined;
  }

  async ensure(start: number, end: number): Promise<void> {
    const first = Math.floor(Math.max(0, start) / this.pageSize);
    const last = Math.floor(Math.max(0, Math.min(end, this.count) - 1) / this.pageSize);
    const loads: Promise<void>[] = [];
    for (let page = first; page <= last; page++) {
      if (!this.pages.has(page)) {
        loads.push(this.load(page));
      }
    }
    await Promise.all(loads);
  }

  private load(page: number): Promise<void> {
    let promise = this.pending.get(page);
    if (!promise) {
      promise = this.fetchPage(page * this.pageSize, this.pageSize).then(
        result => {
          this.pages.set(page, result.items);
          this.count = result.total;
          this.pending.delete(page);
        },
        error => {
          this.pending.delete(page);
          throw error;
        }
      );
      this.pending.set(page, promise);
    }
    return promise;
  }
}

export interface WindowedListOptions<T> {
  rowHeight: number;
  /** Fills a row element for an item (undefined: still loading). */
  renderRow: (row: HTMLElement, item: T | undefined, index: number) => void;
  /** Rows kept beyond each edge of the viewport. */
  overscan?: number;
  /** Height used before the element is laid out (jsdom, hidden panels). */
  fallbackHeight?: number;
  /** Called after each paint with the rendered index range. */
  onPaint?: (start: number, end: number) => void;
}

export class WindowedList<T> {
  readonly node: HTMLElement;
  private readonly spacer: HTMLElement;
  private source: RowSource<T> = new ArraySource<T>([]);
  private rows = new Map<number, HTMLElement>();
  private frame = 0;
  private generation = 0;

  constructor(private readonly options: WindowedListOptions<T>) {
    this.node = document.createElement('div');
    this.node.className = 'cs-WindowedList';
    this.node.setAttribute('role', 'list');
    this.spacer = document.createElement('div');
    this.spacer.className = 'cs-WindowedList-spacer';
    this.node.appendChild(this.spacer);
    this.node.addEventListener('scroll', () => this.schedule(), { passive: true });
  }

  get rowCount(): number {
    return this.source.total;
  }

  /** Indices of the rows now in the DOM, in order (for tests and measurements). */
  get renderedIndices(): number[] {
    return [...this.rows.keys()].sort((a, b) => a - b);
  }

  setSource(source: RowSource<T>): void {
    this.source = source;
    this.generation++;
    for (const row of this.rows.values()) {
      row.remove();
    }
    this.rows.clear();
    this.paint();
  }

  /** Repaints the visible rows (after items changed in place). */
  refresh(): void {
    for (const [index, row] of this.rows) {
      this.options.renderRow(row, this.source.item(index), index);
    }
  }

  scrollToIndex(index: number): void {
    this.node.scrollTop = index * this.options.rowHeight;
    this.paint();
  }

  /** The index range that should be in the DOM now. */
  visibleRange(): [number, number] {
    const { rowHeight } = this.options;
    const overscan = this.options.overscan ?? 8;
    const height = this.node.clientHeight || this.options.fallbackHeight || 400;
    const first = Math.floor(this.node.scrollTop / rowHeight);
    const count = Math.ceil(height / rowHeight);
    const start = Math.max(0, first - overscan);
    const end = Math.min(this.source.total, first + count + overscan);
    return [start, Math.max(start, end)];
  }

  private schedule(): void {
    if (this.frame) {
      return;
    }
    const raf = typeof requestAnimationFrame === 'function' ? requestAnimationFrame : (f: () => void) => setTimeout(f, 0);
    this.frame = raf(() => {
      this.frame = 0;
      this.paint();
    }) as unknown as number;
  }

  /** Puts exactly the visible rows in the DOM, reusing row elements that left the window. */
  paint(): void {
    const { rowHeight, renderRow } = this.options;
    this.spacer.style.height = `${this.source.total * rowHeight}px`;
    const [start, end] = this.visibleRange();
    const spare: HTMLElement[] = [];
    for (const [index, row] of this.rows) {
      if (index < start || index >= end) {
        spare.push(row);
        this.rows.delete(index);
      }
    }
    for (let index = start; index < end; index++) {
      if (this.rows.has(index)) {
        continue;
      }
      const row = spare.pop() ?? this.newRow();
      row.style.top = `${index * rowHeight}px`;
      row.dataset.index = String(index);
      renderRow(row, this.source.item(index), index);
      this.rows.set(index, row);
    }
    for (const row of spare) {
      row.remove();
    }
    this.options.onPaint?.(start, end);
    const missing = [...this.rows.keys()].some(i => this.source.item(i) === undefined);
    if (missing) {
      const generation = this.generation;
      this.source.ensure(start, end).then(
        () => {
          if (generation === this.generation) {
            this.refresh();
          }
        },
        () => undefined
      );
    }
  }

  private newRow(): HTMLElement {
    const row = document.createElement('div');
    row.className = 'cs-WindowedList-row';
    row.setAttribute('role', 'listitem');
    row.style.height = `${this.options.rowHeight}px`;
    this.node.appendChild(row);
    return row;
  }
}

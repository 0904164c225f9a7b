/**
 * The sidebar's content: one search box over every section, each section a
 * collapsible group of windowed lists fed page by page from the REST API,
 * and a detail pane per section for what row actions return. Live job and
 * runtime states arrive as server-sent events and update rows in place.
 */
import { Api, ApiError } from './api';
import { ActionContext, ListSpec, SECTIONS, SectionSpec, loadStates } from './sections';
import { PagedSource, WindowedList } from './windowedList';

export interface SidebarOptions {
  api: Api;
  openRegisterForm: () => void;
  /** Opens the server-sent event stream (undefined: no live updates). */
  openEvents?: () => EventSource | undefined;
  pageSize?: number;
  searchDelay?: number;
  visibleRows?: number;
  sections?: string[];
}

export const ROW_HEIGHT = 24;

/** One list in a section: header, windowed rows, the source behind them. */
class ListView {
  readonly node: HTMLElement;
  readonly list: WindowedList<any>;
  source: PagedSource<any>;
  private readonly count: HTMLElement;
  private readonly error: HTMLElement;
  private query = '';
  private resource: HTMLSelectElement | undefined;
  private generation = 0;
  /** Resolves when the latest load has painted (tests and timing). */
  loaded: Promise<void> = Promise.resolve();

  constructor(
    readonly spec: ListSpec,
    private readonly ctx: ActionContext,
    private readonly pageSize: number,
    private readonly visibleRows: number
  ) {
    this.node = document.createElement('div');
    this.node.className = 'cs-List';
    this.node.dataset.list = spec.id;
    const header = document.createElement('div');
    header.className = 'cs-List-header';
    const title = document.createElement('span');
    title.className = 'cs-List-title';
    title.textContent = spec.label;
    this.count = document.createElement('span');
    this.count.className = 'cs-List-count';
    header.append(title, this.count);
    if (spec.resourceParam) {
      this.resource = document.createElement('select');
      this.resource.className = 'cs-List-resource';
      this.resource.name = spec.resourceParam;
      this.resource.title = 'Compute resource';
      this.resource.setAttribute('aria-label', `${spec.label}: compute resource`);
      this.resource.addEventListener('change', () => void this.load());
      header.appendChild(this.resource);
    }
    for (const tool of spec.tools ?? []) {
      header.appendChild(this.actionButton(tool.label, () => tool.run(undefined, ctx)));
    }
    header.appendChild(this.actionButton('⟳', () => this.load(), 'Refresh'));
    this.error = document.createElement('div');
    this.error.className = 'cs-List-error';
    this.list = new WindowedList<any>({
      rowHeight: ROW_HEIGHT,
      fallbackHeight: ROW_HEIGHT * visibleRows,
      renderRow: (row, item) => this.renderRow(row, item)
    });
    this.source = this.newSource();
    this.node.append(header, this.error, this.list.node);
  }

  setQuery(query: string): Promise<void> {
    this.query = query;
    return this.load();
  }

  load(): Promise<void> {
    void this.fillResources();
    const source = this.newSource();
    // Only the latest load may paint: an older, slower answer (a previous search) is dropped.
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    this.node.dataset.loading = 'true';
    this.loaded = source.start().then(
      () => {
        if (!current()) {
          return;
        }
        delete this.node.dataset.loading;
        this.source = source;
        this.error.textContent = '';
        this.count.textContent = String(source.total);
        this.list.node.style.height = `${Math.min(source.total, this.visibleRows) * ROW_HEIGHT}px`;
        this.list.setSource(source);
        this.node.dataset.total = String(source.total);
      },
      error => {
        if (!current()) {
          return;
        }
        delete this.node.dataset.loading;
        // A route another module has not shipped yet (404) reads as empty, not broken.
        this.error.textContent = error instanceof ApiError && error.status === 404 ? '' : (error as Error).message;
        this.count.textContent = error instanceof ApiError && error.status === 404 ? '–' : '!';
      }
    );
    return this.loaded;
  }

  /** Paints the rows again (their actions depend on what the server said since). */
  repaint(): void {
    this.list.refresh();
  }

  /** Applies a live state change to the row with this key; false when not loaded. */
  update(key: string, changes: Record<string, unknown>): boolean {
    for (let index = 0; index < this.source.total; index++) {
      const item = this.source.item(index);
      if (item && this.spec.key(item) === key) {
        Object.assign(item, changes);
        this.list.refresh();
        return true;
      }
    }
    return false;
  }

  private newSource(): PagedSource<any> {
    const extra: Record<string, string> = {};
    if (this.spec.resourceParam && this.resource?.value) {
      extra[this.spec.resourceParam] = this.resource.value;
    }
    return new PagedSource<any>(
      (offset, limit) => this.ctx.api.list(this.spec.route, { q: this.query, limit, offset, ...extra }),
      this.pageSize
    );
  }

  /** Refills the resource chooser, keeping the choice (status skipped: only names are needed). */
  private async fillResources(): Promise<void> {
    const select = this.resource;
    if (!select) {
      return;
    }
    let names: string[] = [];
    try {
      const page = await this.ctx.api.list('compute', { status: 0, limit: 500 });
      names = page.items.map(item => String(item.name)).filter(name => name !== 'local');
    } catch {
      // Without the list the chooser offers this machine only.
    }
    const chosen = select.value;
    select.textContent = '';
    for (const [value, label] of [['', 'this machine'], ...names.map(n => [n, n])]) {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = label;
      select.appendChild(option);
    }
    select.value = names.includes(chosen) ? chosen : '';
  }

  private renderRow(row: HTMLElement, item: any): void {
    row.textContent = '';
    if (item === undefined) {
      row.classList.add('cs-loading');
      row.textContent = '…';
      return;
    }
    row.classList.remove('cs-loading');
    const key = this.spec.key(item);
    row.dataset.key = key;
    row.title = `${key} ${this.spec.describe(item)}`.trim();
    const name = document.createElement('span');
    name.className = 'cs-row-name';
    name.textContent = key;
    const info = document.createElement('span');
    info.className = 'cs-row-info';
    info.textContent = this.spec.describe(item);
    row.append(name, info);
    const badgeText = this.spec.badge?.(item);
    if (badgeText) {
      const badge = document.createElement('span');
      badge.className = 'cs-badge';
      badge.dataset.state = badgeText.split(' ')[0].toLowerCase();
      badge.textContent = badgeText;
      row.appendChild(badge);
    }
    const actions = document.createElement('span');
    actions.className = 'cs-row-actions';
    for (const action of this.spec.actions) {
      if (!action.when || action.when(item)) {
        actions.appendChild(this.actionButton(action.label, () => action.run(item, this.ctx)));
      }
    }
    row.appendChild(actions);
  }

  private actionButton(label: string, run: () => unknown, title?: string): HTMLButtonElement {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'cs-action';
    button.textContent = label;
    button.title = title ?? label;
    button.addEventListener('click', async event => {
      event.stopPropagation();
      try {
        await run();
      } catch (error) {
        this.ctx.show(`${label} failed`, (error as Error).message);
      }
    });
    return button;
  }
}

/** One collapsible section with its lists and detail pane. */
class SectionView {
  readonly node: HTMLDetailsElement;
  readonly lists: ListView[];
  private readonly detail: HTMLElement;

  constructor(
    readonly spec: SectionSpec,
    base: Omit<ActionContext, 'show'>,
    pageSize: number,
    visibleRows: number
  ) {
    this.node = document.createElement('details');
    this.node.className = 'cs-Section';
    this.node.dataset.section = spec.id;
    this.node.open = true;
    const summary = document.createElement('summary');
    summary.textContent = spec.title;
    this.detail = document.createElement('div');
    this.detail.className = 'cs-Section-detail';
    const ctx: ActionContext = { ...base, show: (title, body) => this.show(title, body) };
    this.lists = spec.lists.map(list => new ListView(list, ctx, pageSize, visibleRows));
    this.node.append(summary, ...this.lists.map(l => l.node), this.detail);
  }

  show(title: string, body: HTMLElement | string): void {
    this.detail.textContent = '';
    const header = document.createElement('div');
    header.className = 'cs-Section-detail-header';
    const caption = document.createElement('span');
    caption.textContent = title;
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'cs-action';
    close.textContent = '×';
    close.title = 'Close';
    close.addEventListener('click', () => (this.detail.textContent = ''));
    header.append(caption, close);
    const content = typeof body === 'string' ? Object.assign(document.createElement('pre'), { textContent: body }) : body;
    this.detail.append(header, content);
  }
}

export class Sidebar {
  readonly node: HTMLElement;
  readonly search: HTMLInputElement;
  readonly sections: SectionView[];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private events: EventSource | undefined;
  /** Panes that follow events themselves (a template's runs and sweeps). */
  private readonly listeners = new Set<(event: Record<string, any>) => void>();

  constructor(private readonly options: SidebarOptions) {
    this.node = document.createElement('div');
    this.node.className = 'cs-Sidebar';
    const header = document.createElement('div');
    header.className = 'cs-Sidebar-header';
    this.search = document.createElement('input');
    this.search.type = 'search';
    this.search.className = 'cs-Search jp-mod-styled';
    this.search.placeholder = 'Search storage, datasets, compute, …';
    this.search.setAttribute('aria-label', 'Search Cybershuttle');
    this.search.addEventListener('input', () => this.searchSoon());
    header.appendChild(this.search);
    const base = {
      api: options.api,
      openRegisterForm: options.openRegisterForm,
      reload: (id: string) => void this.list(id)?.load(),
      subscribe: (listener: (event: Record<string, any>) => void) => {
        this.listeners.add(listener);
        return () => void this.listeners.delete(listener);
      }
    };
    const wanted = options.sections;
    this.sections = SECTIONS.filter(s => !wanted || wanted.includes(s.id)).map(
      s => new SectionView(s, base, options.pageSize ?? 200, options.visibleRows ?? 12)
    );
    this.node.append(header, ...this.sections.map(s => s.node));
    const stateful = this.sections.filter(s => s.spec.usesStates);
    if (stateful.length) {
      // Rows painted before the vocabulary arrived offer their actions again once it has.
      void loadStates(options.api).then(() => stateful.forEach(s => s.lists.forEach(l => l.repaint())));
    }
  }

  list(id: string): ListView | undefined {
    for (const section of this.sections) {
      const found = section.lists.find(l => l.spec.id === id);
      if (found) {
        return found;
      }
    }
    return undefined;
  }

  /** Loads every list with the current search text. */
  refresh(): Promise<void> {
    const query = this.search.value.trim();
    return Promise.all(this.sections.flatMap(s => s.lists.map(l => l.setQuery(query)))).then(() => undefined);
  }

  /** Starts following /events (idempotent). */
  connect(): void {
    if (this.events || !this.options.openEvents) {
      return;
    }
    this.events = this.options.openEvents();
    this.events?.addEventListener('message', event => this.onEvent((event as MessageEvent).data));
  }

  dispose(): void {
    this.events?.close();
    this.events = undefined;
    clearTimeout(this.timer);
  }

  /** Applies one server-sent event: {"kind": "job"|"runtime"|"resource", "id"/"name", "state"}. */
  onEvent(data: string): void {
    let event: any;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    for (const listener of [...this.listeners]) {
      listener(event);
    }
    const target = { job: 'jobs', runtime: 'runtimes', resource: 'compute' }[String(event.kind)];
    const list = target ? this.list(target) : undefined;
    if (!list) {
      return;
    }
    const key = String(event.id ?? event.name ?? '');
    const changes: Record<string, unknown> = { ...event };
    delete changes.kind;
    if ('state' in event && target === 'compute') {
      changes.status = { ...(typeof event.status === 'object' ? event.status : {}), state: event.state };
    }
    // An unknown job or runtime is new: reload that list to show it.
    if (!list.update(key, changes)) {
      void list.load();
    }
  }

  private searchSoon(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), this.options.searchDelay ?? 200);
  }
}

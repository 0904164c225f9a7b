/**
 * What each sidebar section lists and which actions its rows offer. A list
 * is a route of the REST API; an action is a button on a row whose result
 * (a listing, logs, a form) appears in the section's detail pane.
 */
import { Api, seg } from './api';
import { showRuns } from './runsView';
import { Param, SpecForm } from './specForm';

/** What an action may do to the sidebar. */
export interface ActionContext {
  api: Api;
  /** Shows an element in the section's detail pane under a title. */
  show(title: string, body: HTMLElement | string): void;
  /** Reloads a list (by id) after a change. */
  reload(listId: string): void;
  /** Opens the compute-resource registration form. */
  openRegisterForm(): void;
  /** Calls `listener` with every server-sent event until the returned function is called. */
  subscribe?(listener: (event: Record<string, any>) => void): () => void;
}

export interface ActionSpec {
  label: string;
  /** Shown only when true (e.g. Cancel only for a job still running). */
  when?: (item: any) => boolean;
  run(item: any, ctx: ActionContext): Promise<void>;
}

export interface ListSpec {
  id: string;
  label: string;
  route: string;
  key(item: any): string;
  describe(item: any): string;
  badge?(item: any): string;
  actions: ActionSpec[];
  /** Header buttons of the list (e.g. "Register…"). */
  tools?: ActionSpec[];
  /** A header <select> of compute resources whose choice is sent as this query parameter. */
  resourceParam?: string;
}

export interface SectionSpec {
  id: string;
  title: string;
  lists: ListSpec[];
  /** Its rows carry job, run or runtime states: the state vocabulary is read when it is shown. */
  usesStates?: boolean;
}

/**
 * Which states are final, as the server says (route `states`; compute/states.py is the one
 * definition). Until it has answered, no state counts as final: actions stay offered and
 * running things are still re-read, which is safe either way.
 */
let finalStates: Set<string> | null = null;
let statesLoading: Promise<void> | null = null;

export function loadStates(api: Api): Promise<void> {
  if (!statesLoading) {
    statesLoading = api.get<{ final: string[] }>('states').then(
      vocabulary => {
        finalStates = new Set(vocabulary.final);
      },
      () => {
        statesLoading = null; // asked again by the next section that needs it
      }
    );
  }
  return statesLoading;
}

export function isFinal(state: unknown): boolean {
  return finalStates !== null && finalStates.has(String(state ?? '').toUpperCase());
}

function text(value: unknown): string {
  return value === undefined || value === null ? '' : String(value);
}

function pre(content: string): HTMLElement {
  const node = document.createElement('pre');
  node.className = 'cs-pre';
  node.textContent = content;
  return node;
}

/** A small key/value table of a record (nested values as JSON). */
export function recordTable(record: Record<string, unknown>): HTMLElement {
  const table = document.createElement('table');
  table.className = 'cs-record';
  for (const [key, value] of Object.entries(record)) {
    const row = table.insertRow();
    row.insertCell().textContent = key;
    row.insertCell().textContent = typeof value === 'object' && value !== null ? JSON.stringify(value) : text(value);
  }
  return table;
}

function button(label: string, onClick: () => void): HTMLButtonElement {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = 'jp-mod-styled cs-button';
  node.textContent = label;
  node.addEventListener('click', onClick);
  return node;
}

function labelledInput(label: string, name: string, value = ''): [HTMLElement, HTMLInputElement] {
  const row = document.createElement('div');
  row.className = 'cs-field';
  const input = document.createElement('input');
  input.name = name;
  input.id = `cs-input-${name}`;
  input.value = value;
  const caption = document.createElement('label');
  caption.htmlFor = input.id;
  caption.textContent = label;
  row.append(caption, input);
  return [row, input];
}

/** A <select> of registered compute resources ('' = the template's own default). */
async function resourceSelect(api: Api): Promise<[HTMLElement, HTMLSelectElement]> {
  const row = document.createElement('div');
  row.className = 'cs-field';
  const select = document.createElement('select');
  select.name = 'resource';
  select.id = 'cs-input-resource';
  const none = document.createElement('option');
  none.value = '';
  none.textContent = '(default)';
  select.appendChild(none);
  const page = await api.list('compute', { limit: 500 });
  for (const resource of page.items) {
    const option = document.createElement('option');
    option.value = option.textContent = resource.name;
    select.appendChild(option);
  }
  const caption = document.createElement('label');
  caption.htmlFor = select.id;
  caption.textContent = 'Resource';
  row.append(caption, select);
  return [row, select];
}

function result(ctx: ActionContext, title: string, body: unknown): void {
  ctx.show(title, typeof body === 'object' && body !== null ? recordTable(body as Record<string, unknown>) : pre(text(body)));
}

// -- Storage --------------------------------------------------------------
async function browse(ctx: ActionContext, name: string, path: string): Promise<void> {
  const page = await ctx.api.list(`storage/${seg(name)}/ls`, { path });
  const list = document.createElement('ul');
  list.className = 'cs-browse';
  if (path !== '/') {
    const up = document.createElement('li');
    up.appendChild(button('..', () => void browse(ctx, name, path.replace(/\/[^/]+\/?$/, '') || '/')));
    list.appendChild(up);
  }
  for (const entry of page.items) {
    const item = document.createElement('li');
    const base = String(entry.name).split('/').pop();
    const child = entry.path ?? `${path.replace(/\/$/, '')}/${base}`;
    item.dataset.entry = base;
    if (entry.type === 'directory') {
      item.appendChild(button(`${base}/`, () => void browse(ctx, name, child)));
    } else {
      item.textContent = `${base}  ${text(entry.size)} B`;
    }
    list.appendChild(item);
  }
  ctx.show(`${name}:${path}`, list);
}

function copyForm(ctx: ActionContext, name: string): void {
  const form = document.createElement('div');
  const [srcRow, src] = labelledInput('From', 'src', `${name}:/`);
  const [dstRow, dst] = labelledInput('To', 'dst', '');
  const out = document.createElement('div');
  form.append(
    srcRow,
    dstRow,
    button('Copy', async () => {
      out.textContent = 'Copying…';
      try {
        const done = await ctx.api.post('storage/copy', { src: src.value.trim(), dst: dst.value.trim() });
        out.textContent = `Copied: ${JSON.stringify(done)}`;
      } catch (error) {
        out.textContent = (error as Error).message;
      }
    }),
    out
  );
  ctx.show(`Copy from ${name}`, form);
}

// -- Datasets -------------------------------------------------------------
/** "Publish…": registers a dataset, public by default (the site catalog: everyone sees it, only you change it). */
function publishForm(ctx: ActionContext): void {
  const form = document.createElement('div');
  form.className = 'cs-publish';
  const [nameRow, name] = labelledInput('Name', 'dataset-name');
  const [locationRow, location] = labelledInput('Location (URL, path or storage:/path)', 'dataset-location');
  const [descriptionRow, description] = labelledInput('Description', 'dataset-description');
  const publicRow = document.createElement('div');
  publicRow.className = 'cs-field';
  const isPublic = document.createElement('input');
  isPublic.type = 'checkbox';
  isPublic.name = 'public';
  isPublic.id = 'cs-input-dataset-public';
  isPublic.checked = true;
  const publicLabel = document.createElement('label');
  publicLabel.htmlFor = isPublic.id;
  publicLabel.textContent = 'Public: everyone on this site sees it; only you can change or remove it';
  publicRow.append(isPublic, publicLabel);
  const out = document.createElement('div');
  out.className = 'cs-field-error';
  form.append(
    nameRow,
    locationRow,
    descriptionRow,
    publicRow,
    button('Publish', async () => {
      out.textContent = 'Publishing…';
      try {
        const done = await ctx.api.post('datasets', {
          name: name.value.trim(),
          location: location.value.trim(),
          description: description.value.trim(),
          public: isPublic.checked
        });
        ctx.reload('datasets');
        result(ctx, `Published ${text(done.name)}`, done);
      } catch (error) {
        out.textContent = (error as Error).message;
      }
    }),
    out
  );
  ctx.show('Publish a dataset', form);
}

// -- Templates ------------------------------------------------------------
async function templateRunForm(ctx: ActionContext, name: string): Promise<void> {
  const template = await ctx.api.get(`templates/${seg(name)}`);
  const params: Param[] = template.spec ?? template.parameters ?? [];
  const form = new SpecForm(params);
  const box = document.createElement('div');
  box.className = 'cs-template-run';
  const [resourceRow, resource] = await resourceSelect(ctx.api);
  const problems = document.createElement('div');
  problems.className = 'cs-field-error';
  box.append(
    form.node,
    resourceRow,
    button('Run', async () => {
      const read = form.read();
      if (!read.ok) {
        problems.textContent = read.problems.join('; ');
        return;
      }
      problems.textContent = 'Starting…';
      try {
        // Do not hold the request open for the whole run: it is followed in the runs pane.
        const body: Record<string, unknown> = { inputs: read.values, wait: false };
        if (resource.value) {
          body.resource = resource.value;
        }
        const run = await ctx.api.post(`templates/${seg(name)}/runs`, body);
        await showRuns(ctx, name, `Started run ${text(run.id)}`);
      } catch (error) {
        problems.textContent = (error as Error).message;
      }
    }),
    problems
  );
  ctx.show(`Run template ${name}`, box);
}

// -- Models ---------------------------------------------------------------
async function modelRunForm(ctx: ActionContext, name: string): Promise<void> {
  const box = document.createElement('div');
  const [inputRow, input] = labelledInput('Input file or folder (under the Jupyter root)', 'input');
  const [outputRow, output] = labelledInput('Output folder (optional)', 'output');
  const [resourceRow, resource] = await resourceSelect(ctx.api);
  const out = document.createElement('div');
  box.append(
    inputRow,
    outputRow,
    resourceRow,
    button('Run', async () => {
      out.textContent = 'Running…';
      try {
        const body: Record<string, unknown> = {};
        const where = input.value.trim();
        if (where) body[where.endsWith('/') ? 'input_folder' : 'input'] = where;
        if (output.value.trim()) body.output = output.value.trim();
        if (resource.value) body.resource = resource.value;
        const done = await ctx.api.post(`models/${seg(name)}/run`, body);
        out.textContent = '';
        out.appendChild(recordTable(done));
      } catch (error) {
        out.textContent = (error as Error).message;
      }
    }),
    out
  );
  ctx.show(`Run model ${name}`, box);
}

/** "up 1/1 idle", "up", "down", or '' while unknown. */
export function resourceBadge(status: any): string {
  if (!status || typeof status !== 'object') {
    return text(status);
  }
  if (status.state) {
    return text(status.state);
  }
  if (status.reachable === undefined) {
    return '';
  }
  if (!status.reachable) {
    return 'down';
  }
  return status.idle_nodes !== null && status.idle_nodes !== undefined && status.nodes
    ? `up ${status.idle_nodes}/${status.nodes} idle`
    : 'up';
}

// -- Applications -----------------------------------------------------------
async function applicationLoadForm(ctx: ActionContext, app: any): Promise<void> {
  const box = document.createElement('div');
  const versionRow = document.createElement('div');
  versionRow.className = 'cs-field';
  const version = document.createElement('select');
  version.name = 'version';
  version.id = 'cs-input-version';
  const defaultOption = document.createElement('option');
  defaultOption.value = '';
  defaultOption.textContent = '(default)';
  version.appendChild(defaultOption);
  for (const v of app.versions ?? []) {
    const option = document.createElement('option');
    option.value = option.textContent = text(v.version);
    version.appendChild(option);
  }
  const versionLabel = document.createElement('label');
  versionLabel.htmlFor = version.id;
  versionLabel.textContent = 'Version';
  versionRow.append(versionLabel, version);
  const [setupRow, setupFile] = labelledInput('Setup file (under the Jupyter root)', 'setup_file', 'cybershuttle.yml');
  const [runtimeRow, runtime] = labelledInput('Running runtime (optional)', 'runtime');
  const out = document.createElement('div');
  box.append(
    versionRow,
    setupRow,
    runtimeRow,
    button('Load', async () => {
      out.textContent = 'Loading…';
      try {
        const body: Record<string, unknown> = {};
        if (version.value) body.version = version.value;
        if (setupFile.value.trim()) body.setup_file = setupFile.value.trim();
        if (runtime.value.trim()) body.runtime = runtime.value.trim();
        if (app.resource) body.resource = app.resource;
        const done = await ctx.api.post(`applications/${seg(app.name)}/load`, body);
        out.textContent = '';
        out.appendChild(recordTable(done));
      } catch (error) {
        out.textContent = (error as Error).message;
      }
    }),
    out
  );
  ctx.show(`Load ${app.name}`, box);
}

// -- Sessions ---------------------------------------------------------------
async function loadSession(ctx: ActionContext, name: string, dryRun: boolean): Promise<void> {
  const done = await ctx.api.post(`sessions/${seg(name)}/load`, dryRun ? { dry_run: true } : {});
  const lines: string[] = Array.isArray(done?.output) ? done.output : [];
  ctx.show(`${dryRun ? 'Steps of' : 'Loaded'} ${name}`, lines.length ? pre(lines.join('\n')) : recordTable(done));
}

const byName = (item: any): string => text(item.name ?? item.id);

export const SECTIONS: SectionSpec[] = [
  {
    id: 'storage',
    title: 'Storage',
    lists: [
      {
        id: 'storage',
        label: 'Storages',
        route: 'storage',
        key: byName,
        describe: item => text(item.location),
        badge: item => (item.read_only ? 'read-only' : ''),
        actions: [
          { label: 'Browse', run: (item, ctx) => browse(ctx, item.name, '/') },
          {
            label: 'Mount',
            run: async (item, ctx) => result(ctx, `Mounted ${item.name}`, await ctx.api.post(`storage/${seg(item.name)}/mount`, {}))
          },
          { label: 'Copy…', run: async (item, ctx) => copyForm(ctx, item.name) }
        ]
      }
    ]
  },
  {
    id: 'datasets',
    title: 'Datasets',
    lists: [
      {
        id: 'datasets',
        label: 'Datasets',
        route: 'datasets',
        key: byName,
        describe: item =>
          [text(item.description || item.location || (item.locations ?? []).join(', ')), item.public && item.owner ? `by ${text(item.owner)}` : '']
            .filter(Boolean)
            .join(' · '),
        badge: item => (item.public ? 'public' : ''),
        actions: [
          { label: 'Details', run: async (item, ctx) => result(ctx, item.name, await ctx.api.get(`datasets/${seg(item.name)}`)) },
          {
            // Only on your own entries; the catalog refuses anyone else's anyway.
            label: 'Remove',
            when: item => item.mine === true,
            run: async (item, ctx) => {
              result(ctx, `Removed ${item.name}`, await ctx.api.post(`datasets/${seg(item.name)}/remove`, {}));
              ctx.reload('datasets');
            }
          }
        ],
        tools: [{ label: 'Publish…', run: async (_item, ctx) => publishForm(ctx) }]
      }
    ]
  },
  {
    id: 'compute',
    usesStates: true,
    title: 'Compute',
    lists: [
      {
        id: 'compute',
        label: 'Resources',
        route: 'compute',
        key: byName,
        describe: item => [item.kind, item.host ? `${text(item.user ?? '')}${item.user ? '@' : ''}${item.host}` : 'this machine'].join(' · '),
        badge: item => resourceBadge(item.status),
        actions: [{ label: 'Details', run: async (item, ctx) => result(ctx, item.name, await ctx.api.get(`compute/${seg(item.name)}`)) }],
        tools: [{ label: 'Register…', run: async (_item, ctx) => ctx.openRegisterForm() }]
      },
      {
        id: 'runtimes',
        label: 'Runtimes',
        route: 'runtimes',
        key: byName,
        // While a runtime starts, its environment set-up (a conda build can take minutes) shows here;
        // once running, the warning that its walltime ends soon.
        describe: item =>
          [item.resource, item.host, item.state === 'REQUESTED' ? item.progress : item.warning].filter(Boolean).join(' · '),
        badge: item => text(item.state ?? item.status ?? ''),
        actions: [
          {
            label: 'Stop',
            when: item => !isFinal(item.state),
            run: async (item, ctx) => {
              result(ctx, `Stopped ${item.name}`, await ctx.api.post(`runtimes/${seg(item.name)}/stop`, {}));
              ctx.reload('runtimes');
            }
          }
        ]
      },
      {
        id: 'jobs',
        label: 'Jobs',
        route: 'jobs',
        key: item => text(item.id),
        describe: item => [item.name, item.resource].filter(Boolean).join(' · '),
        badge: item => text(item.state ?? item.status ?? ''),
        actions: [
          {
            label: 'Logs',
            run: async (item, ctx) => {
              // The log's last MiB: the route serves a log in pieces, and its end says most.
              const logs = await ctx.api.get(`jobs/${seg(String(item.id))}/logs?offset=-1048576`);
              const cut = typeof logs === 'object' && logs.offset > 0 ? ` (its last ${logs.size - logs.offset} of ${logs.size} bytes)` : '';
              ctx.show(`Logs of job ${item.id}${cut}`, pre(typeof logs === 'string' ? logs : [logs.stdout, logs.stderr, logs.text, logs.log].filter(Boolean).join('\n')));
            }
          },
          {
            label: 'Cancel',
            when: item => !item.final && !isFinal(item.state ?? item.status),
            run: async (item, ctx) => {
              result(ctx, `Cancelled job ${item.id}`, await ctx.api.post(`jobs/${seg(String(item.id))}/cancel`, {}));
              ctx.reload('jobs');
            }
          }
        ]
      }
    ]
  },
  {
    id: 'sessions',
    usesStates: true,
    title: 'Sessions & Templates',
    lists: [
      {
        id: 'sessions',
        label: 'Sessions',
        route: 'sessions',
        key: byName,
        describe: item => text(item.kind ?? item.description ?? ''),
        actions: [
          { label: 'Dry run', run: (item, ctx) => loadSession(ctx, item.name, true) },
          { label: 'Load', run: (item, ctx) => loadSession(ctx, item.name, false) }
        ]
      },
      {
        id: 'templates',
        label: 'Templates',
        route: 'templates',
        key: byName,
        describe: item => text(item.description ?? item.notebook ?? ''),
        actions: [
          { label: 'Run…', run: (item, ctx) => templateRunForm(ctx, item.name) },
          { label: 'Runs', run: (item, ctx) => showRuns(ctx, item.name) }
        ]
      }
    ]
  },
  {
    id: 'applications',
    title: 'Applications',
    lists: [
      {
        id: 'applications',
        label: 'Applications',
        route: 'applications',
        resourceParam: 'resource',
        key: byName,
        describe: item => text(item.description || [item.source, item.resource].filter(Boolean).join(' · ')),
        badge: item => (item.versions?.length > 1 ? `${item.versions.length} versions` : text(item.versions?.[0]?.version ?? '')),
        actions: [{ label: 'Load…', run: (item, ctx) => applicationLoadForm(ctx, item) }]
      }
    ]
  },
  {
    id: 'models',
    title: 'Models',
    lists: [
      {
        id: 'models',
        label: 'Models',
        route: 'models',
        key: byName,
        describe: item => [item.kind, item.description].filter(Boolean).join(' · '),
        actions: [{ label: 'Run…', run: (item, ctx) => modelRunForm(ctx, item.name) }]
      }
    ]
  }
];

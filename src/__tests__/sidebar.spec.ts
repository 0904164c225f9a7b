import { Sidebar } from '../sidebar';
import { fakeApi, flush, pagedRoute } from './helpers';

function datasets(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `ds-${String(i).padStart(5, '0')}`);
}

function build(routes: Record<string, any>, extra: Partial<ConstructorParameters<typeof Sidebar>[0]> = {}) {
  const { api, calls } = fakeApi(routes);
  let opened = 0;
  const sidebar = new Sidebar({ api, openRegisterForm: () => opened++, searchDelay: 0, ...extra });
  document.body.appendChild(sidebar.node);
  return { sidebar, calls, opened: () => opened };
}

const rowKeys = (sidebar: Sidebar, list: string) =>
  [...sidebar.node.querySelectorAll<HTMLElement>(`[data-list="${list}"] .cs-WindowedList-row`)].map(r => r.dataset.key);

describe('Sidebar', () => {
  it('has the six sections and one search box', () => {
    const { sidebar } = build({});
    expect(sidebar.sections.map(s => s.spec.title)).toEqual([
      'Storage', 'Datasets', 'Compute', 'Sessions & Templates', 'Applications', 'Models'
    ]);
    expect(sidebar.node.querySelectorAll('input[type="search"]')).toHaveLength(1);
  });

  it('shows 10,000 datasets with one page fetched and few rows in the DOM', async () => {
    const { sidebar, calls } = build({ 'GET datasets': pagedRoute(datasets(10000)) }, { sections: ['datasets'] });
    await sidebar.refresh();
    const list = sidebar.node.querySelector<HTMLElement>('[data-list="datasets"]')!;
    expect(list.dataset.total).toBe('10000');
    expect(list.querySelector('.cs-List-count')!.textContent).toBe('10000');
    expect(rowKeys(sidebar, 'datasets').length).toBeLessThan(30);
    expect(rowKeys(sidebar, 'datasets')[0]).toBe('ds-00000');
    expect(calls.map(c => c.path)).toEqual(['datasets?limit=200&offset=0']);
  });

  it('searches every section with the one box', async () => {
    const { sidebar, calls } = build({
      'GET datasets': pagedRoute(datasets(10000)),
      'GET storage': pagedRoute(['home', 'scratch-ds-01234'])
    }, { sections: ['storage', 'datasets'] });
    await sidebar.refresh();
    sidebar.search.value = 'ds-01234';
    sidebar.search.dispatchEvent(new Event('input'));
    await new Promise(r => setTimeout(r, 10));
    await sidebar.list('datasets')!.loaded;
    await sidebar.list('storage')!.loaded;
    expect(rowKeys(sidebar, 'datasets')).toEqual(['ds-01234']);
    expect(rowKeys(sidebar, 'storage')).toEqual(['scratch-ds-01234']);
    expect(calls.filter(c => c.path.includes('q=ds-01234'))).toHaveLength(2);
  });

  it('paints only the latest search when answers arrive out of order', async () => {
    const slow: Array<() => void> = [];
    const { api } = fakeApi({ 'GET datasets': pagedRoute(datasets(50)) });
    const delayed = new (api.constructor as any)(async (path: string, init: RequestInit) => {
      const answer = await (api as any).send(path, init);
      if (path.includes('q=ds-0001')) {
        await new Promise<void>(resolve => slow.push(resolve)); // the older search answers last
      }
      return answer;
    });
    const sidebar = new Sidebar({ api: delayed, openRegisterForm: () => undefined, sections: ['datasets'] });
    document.body.appendChild(sidebar.node);
    const list = sidebar.list('datasets')!;
    const older = list.setQuery('ds-0001');
    await list.setQuery('ds-00042');
    expect(rowKeys(sidebar, 'datasets')).toEqual(['ds-00042']);
    slow.forEach(resolve => resolve());
    await older;
    expect(rowKeys(sidebar, 'datasets')).toEqual(['ds-00042']);
    expect(sidebar.node.querySelector('[data-list="datasets"]')!.hasAttribute('data-loading')).toBe(false);
  });

  it('applies live job events in place and reloads for unknown jobs', async () => {
    let jobs = [{ id: '17', name: 'train', resource: 'cluster', state: 'PENDING' }];
    const { sidebar, calls } = build({ 'GET jobs': () => ({ items: jobs, total: jobs.length }) }, { sections: ['compute'] });
    await sidebar.list('jobs')!.load();
    const badge = () => sidebar.node.querySelector('[data-list="jobs"] [data-key="17"] .cs-badge')!;
    expect(badge().textContent).toBe('PENDING');
    sidebar.onEvent(JSON.stringify({ kind: 'job', id: '17', state: 'RUNNING', final: false }));
    expect(badge().textContent).toBe('RUNNING');
    // Cancel is offered only while the job runs.
    const cancel = () => [...sidebar.node.querySelectorAll('[data-list="jobs"] [data-key="17"] button')].map(b => b.textContent);
    expect(cancel()).toContain('Cancel');
    sidebar.onEvent(JSON.stringify({ kind: 'job', id: '17', state: 'COMPLETED', final: true }));
    expect(cancel()).not.toContain('Cancel');
    jobs = [...jobs, { id: '18', name: 'eval', resource: 'cluster', state: 'RUNNING' }];
    const before = calls.length;
    sidebar.onEvent(JSON.stringify({ kind: 'job', id: '18', state: 'RUNNING' }));
    await sidebar.list('jobs')!.loaded;
    expect(calls.length).toBe(before + 1);
    expect(rowKeys(sidebar, 'jobs')).toEqual(['17', '18']);
    sidebar.onEvent('not json');
  });

  it("shows a job log's last MiB, saying how much of it that is", async () => {
    const jobs = [{ id: '17', name: 'train', resource: 'cluster', state: 'RUNNING' }];
    const size = 3 * 2 ** 30;
    const { sidebar, calls } = build({
      'GET jobs': () => ({ items: jobs, total: 1 }),
      'GET jobs/17/logs': () => ({ id: '17', size, offset: size - 2 ** 20, next_offset: size, more: false, log: 'the-end\n' })
    }, { sections: ['compute'] });
    await sidebar.list('jobs')!.load();
    const logs = [...sidebar.node.querySelectorAll<HTMLButtonElement>('[data-list="jobs"] [data-key="17"] button')]
      .find(b => b.textContent === 'Logs')!;
    logs.click();
    await flush();
    expect(calls.map(c => c.path)).toContain('jobs/17/logs?offset=-1048576');
    const detail = sidebar.node.querySelector('[data-section="compute"] .cs-Section-detail')!.textContent;
    expect(detail).toContain(`Logs of job 17 (its last 1048576 of ${size} bytes)`);
    expect(detail).toContain('the-end');
  });

  it("shows a starting runtime's environment set-up from its events, then drops it when ready", async () => {
    const runtimes = [{ name: 'conda', resource: 'hpc', state: 'REQUESTED' }];
    const { sidebar } = build({ 'GET runtimes': () => ({ items: runtimes, total: runtimes.length }) }, { sections: ['compute'] });
    await sidebar.list('runtimes')!.load();
    const row = () => sidebar.node.querySelector('[data-list="runtimes"] [data-key="conda"]')!;
    sidebar.onEvent(JSON.stringify({ kind: 'runtime', name: 'conda', state: 'REQUESTED', progress: 'linked 3 of 5 conda packages' }));
    expect(row().textContent).toContain('hpc · linked 3 of 5 conda packages');
    sidebar.onEvent(JSON.stringify({ kind: 'runtime', name: 'conda', state: 'READY', progress: 'conda environment ready' }));
    expect(row().textContent).not.toContain('conda environment ready');
    expect(row().querySelector('.cs-badge')!.textContent).toBe('READY');
  });

  it("shows the warning that a runtime's walltime ends soon on its row", async () => {
    const runtimes = [{ name: 'long', resource: 'hpc', state: 'READY' }];
    const { sidebar } = build({ 'GET runtimes': () => ({ items: runtimes, total: runtimes.length }) }, { sections: ['compute'] });
    await sidebar.list('runtimes')!.load();
    const row = () => sidebar.node.querySelector('[data-list="runtimes"] [data-key="long"]')!;
    const text = 'cybershuttle: the walltime of runtime long ends in about 5 min (at 14:05:00); namespace checkpointed';
    sidebar.onEvent(JSON.stringify({ kind: 'runtime', name: 'long', state: 'READY', progress: text, warning: text }));
    expect(row().textContent).toContain('hpc · cybershuttle: the walltime of runtime long ends in about 5 min');
  });

  it('shows resource status and opens the registration form', async () => {
    const { sidebar, opened } = build({
      'GET compute': () => ({ items: [
        { name: 'local', kind: 'local', status: { reachable: true, nodes: 1, idle_nodes: null } },
        { name: 'hpc', kind: 'slurm', host: 'h', user: 'u', status: { reachable: true, nodes: 2, idle_nodes: 1 } },
        { name: 'gone', kind: 'ssh', host: 'x', status: { reachable: false, error: 'timed out' } }
      ], total: 3 })
    }, { sections: ['compute'] });
    await sidebar.list('compute')!.load();
    const badges = [...sidebar.node.querySelectorAll('[data-list="compute"] .cs-badge')].map(b => b.textContent);
    expect(badges).toEqual(['up', 'up 1/2 idle', 'down']);
    const register = [...sidebar.node.querySelectorAll<HTMLButtonElement>('[data-list="compute"] .cs-List-header button')].find(b => b.textContent === 'Register…')!;
    register.click();
    await flush();
    expect(opened()).toBe(1);
  });

  it('runs a template from a form generated from its spec and lists the run', async () => {
    const runs: any[] = [];
    let reads = 0;
    const { sidebar, calls } = build({
      'GET templates': () => ({ items: [{ name: 'sim' }], total: 1 }),
      'GET templates/sim': () => ({ name: 'sim', spec: [{ name: 'steps', type: 'int', default: 3, min: 1 }] }),
      'GET compute': () => ({ items: [{ name: 'local', kind: 'local' }], total: 1 }),
      'POST templates/sim/runs': (_u: URL, body: any) => {
        const run = { id: 'sim-1', template: 'sim', status: 'RUNNING', parameters: body.inputs, resource: body.resource };
        runs.push(run);
        return { status: 202, body: run };
      },
      'GET templates/sim/runs': () => {
        // The run ends between the first and the second look.
        const items = runs.map(r => ({ ...r }));
        if (reads++ > 0) {
          items.forEach(r => Object.assign(r, { status: 'COMPLETED', outputs: { area: 25 } }));
        }
        return { items, total: items.length };
      }
    }, { sections: ['sessions'] });
    await sidebar.list('templates')!.load();
    const runButton = [...sidebar.node.querySelectorAll<HTMLButtonElement>('[data-key="sim"] button')].find(b => b.textContent === 'Run…')!;
    runButton.click();
    await new Promise(r => setTimeout(r, 10));
    const detail = sidebar.node.querySelector('[data-section="sessions"] .cs-Section-detail')!;
    (detail.querySelector('[name="steps"]') as HTMLInputElement).value = '5';
    (detail.querySelector('[name="resource"]') as HTMLSelectElement).value = 'local';
    [...detail.querySelectorAll<HTMLButtonElement>('button')].find(b => b.textContent === 'Run')!.click();
    await new Promise(r => setTimeout(r, 10));
    expect(calls.find(c => c.method === 'POST')!.body).toEqual({ inputs: { steps: 5 }, resource: 'local', wait: false });
    expect(detail.querySelector('.cs-run[data-run="sim-1"]')!.textContent).toContain('RUNNING');
    // The pane does not poll: the run's end arrives as an event, and the runs are read once more.
    await new Promise(r => setTimeout(r, 100));
    expect(reads).toBe(1);
    sidebar.onEvent(JSON.stringify({ kind: 'run', id: 'sim-1', template: 'sim', state: 'COMPLETED', final: true }));
    await flush();
    await flush();
    expect(detail.querySelector('.cs-run[data-run="sim-1"]')!.textContent).toContain('COMPLETED');
    expect(detail.querySelector('.cs-run[data-run="sim-1"]')!.textContent).toContain('{"area":25}');
    // Ended: no more reads.
    expect(reads).toBe(2);
  });

  it('loads an application version into a setup file and dry-runs a session', async () => {
    const { sidebar, calls } = build({
      'GET applications': () => ({ items: [{ name: 'gcc', source: 'lmod', resource: 'local', description: 'GNU compilers',
        versions: [{ version: '12.2' }, { version: '13.1', default: true }] }], total: 1 }),
      'GET compute': () => ({ items: [{ name: 'local' }, { name: 'hpc' }], total: 2 }),
      'POST applications/gcc/load': (_u: URL, body: any) => ({ loaded: 'gcc/' + body.version, setup_file: body.setup_file }),
      'GET sessions': () => ({ items: [{ name: 'analysis', kind: 'shell' }], total: 1 }),
      'POST sessions/analysis/load': () => ({ output: ['[1/2] cd /data', '[2/2] make plots'] })
    }, { sections: ['applications', 'sessions'] });
    await sidebar.refresh();
    const click = (root: ParentNode, label: string) =>
      [...root.querySelectorAll<HTMLButtonElement>('button')].find(b => b.textContent === label)!.click();
    expect(sidebar.node.querySelector('[data-key="gcc"] .cs-badge')!.textContent).toBe('2 versions');
    click(sidebar.node.querySelector('[data-key="gcc"]')!, 'Load…');
    await flush();
    const detail = sidebar.node.querySelector('[data-section="applications"] .cs-Section-detail')!;
    (detail.querySelector('[name="version"]') as HTMLSelectElement).value = '12.2';
    click(detail, 'Load');
    await flush();
    expect(calls.find(c => c.path === 'applications/gcc/load')!.body).toEqual({ version: '12.2', setup_file: 'cybershuttle.yml', resource: 'local' });
    expect(detail.textContent).toContain('gcc/12.2');

    // The chooser lists resources; picking one lists that resource's applications.
    const chooser = sidebar.node.querySelector<HTMLSelectElement>('[data-list="applications"] select[name="resource"]')!;
    expect([...chooser.options].map(o => o.textContent)).toEqual(['this machine', 'hpc']);
    chooser.value = 'hpc';
    chooser.dispatchEvent(new Event('change'));
    await sidebar.list('applications')!.loaded;
    expect(calls[calls.length - 1].path).toBe('applications?limit=200&offset=0&resource=hpc');

    click(sidebar.node.querySelector('[data-key="analysis"]')!, 'Dry run');
    await flush();
    expect(calls.find(c => c.path === 'sessions/analysis/load')!.body).toEqual({ dry_run: true });
    expect(sidebar.node.querySelector('[data-section="sessions"] .cs-Section-detail pre')!.textContent).toBe('[1/2] cd /data\n[2/2] make plots');
  });

  it('browses, mounts and copies storage', async () => {
    const { sidebar, calls } = build({
      'GET storage': () => ({ items: [{ name: 'lab', location: '/data/lab', read_only: false }], total: 1 }),
      'GET storage/lab/ls': (url: URL) =>
        url.searchParams.get('path') === '/'
          ? { items: [{ name: 'runs', path: '/runs', type: 'directory' }, { name: 'a.csv', path: '/a.csv', type: 'file', size: 12 }], total: 2 }
          : { items: [{ name: 'r1.txt', path: '/runs/r1.txt', type: 'file', size: 3 }], total: 1 },
      'POST storage/lab/mount': () => ({ name: 'lab', directory: '/home/u/lab', how: 'symlink' }),
      'POST storage/copy': (_u: URL, body: any) => ({ src: body.src, dst: body.dst, files: 1 })
    }, { sections: ['storage'] });
    await sidebar.refresh();
    const detail = sidebar.node.querySelector('[data-section="storage"] .cs-Section-detail')!;
    const click = (root: ParentNode, label: string) =>
      [...root.querySelectorAll<HTMLButtonElement>('button')].find(b => b.textContent === label)!.click();
    const row = sidebar.node.querySelector('[data-list="storage"] [data-key="lab"]')!;
    click(row, 'Browse');
    await flush();
    expect(detail.textContent).toContain('lab:/');
    expect(detail.querySelector('[data-entry="a.csv"]')!.textContent).toContain('12 B');
    click(detail, 'runs/');
    await flush();
    expect(calls[calls.length - 1].path).toBe('storage/lab/ls?path=%2Fruns');
    expect(detail.querySelector('[data-entry="r1.txt"]')).not.toBeNull();

    click(row, 'Mount');
    await flush();
    expect(detail.textContent).toContain('/home/u/lab');

    click(row, 'Copy…');
    (detail.querySelector('[name="dst"]') as HTMLInputElement).value = 'home:/backup/';
    (detail.querySelector('[name="src"]') as HTMLInputElement).value = 'lab:/a.csv';
    click(detail, 'Copy');
    await flush();
    expect(calls.find(c => c.path === 'storage/copy')!.body).toEqual({ src: 'lab:/a.csv', dst: 'home:/backup/' });
    expect(detail.textContent).toContain('Copied');
  });

  it('publishes a dataset and offers Remove only on your own', async () => {
    const items = [
      { name: 'mine1', description: 'my table', public: true, owner: 'me', mine: true },
      { name: 'theirs', description: 'their table', public: true, owner: 'csuser', mine: false }
    ];
    const { sidebar, calls } = build({
      'GET datasets': () => ({ items, total: items.length }),
      'POST datasets': (_u: URL, body: any) => ({ ...body, owner: 'me', mine: true }),
      'POST datasets/mine1/remove': () => ({ name: 'mine1' })
    }, { sections: ['datasets'] });
    await sidebar.refresh();
    const list = sidebar.node.querySelector('[data-list="datasets"]')!;
    const row = (key: string) => list.querySelector<HTMLElement>(`.cs-WindowedList-row[data-key="${key}"]`)!;
    const buttons = (root: ParentNode) => [...root.querySelectorAll<HTMLButtonElement>('button')].map(b => b.textContent);
    expect(row('theirs').textContent).toContain('their table · by csuser');
    expect(row('theirs').querySelector('.cs-badge')!.textContent).toBe('public');
    expect(buttons(row('theirs'))).toEqual(['Details']);
    expect(buttons(row('mine1'))).toEqual(['Details', 'Remove']);

    const click = (root: ParentNode, label: string) =>
      [...root.querySelectorAll<HTMLButtonElement>('button')].find(b => b.textContent === label)!.click();
    click(list, 'Publish…');
    const detail = sidebar.node.querySelector('[data-section="datasets"] .cs-Section-detail')!;
    (detail.querySelector('[name="dataset-name"]') as HTMLInputElement).value = 'new1';
    (detail.querySelector('[name="dataset-location"]') as HTMLInputElement).value = ' /data/new1 ';
    expect((detail.querySelector('[name="public"]') as HTMLInputElement).checked).toBe(true);
    click(detail, 'Publish');
    await flush();
    expect(calls.find(c => c.method === 'POST')!.body).toEqual({ name: 'new1', location: '/data/new1', description: '', public: true });
    expect(detail.textContent).toContain('Published new1');

    click(row('mine1'), 'Remove');
    await flush();
    expect(calls.some(c => c.method === 'POST' && c.path === 'datasets/mine1/remove')).toBe(true);
    expect(detail.textContent).toContain('Removed mine1');
  });

  it('shows an error a person can act on, and a 404 route as empty', async () => {
    const { sidebar } = build({
      'GET storage': () => ({ status: 400, body: { error: 'storage catalog is locked: retry' } })
    }, { sections: ['storage', 'models'] });
    await sidebar.refresh();
    expect(sidebar.node.querySelector('[data-list="storage"] .cs-List-error')!.textContent).toBe('storage catalog is locked: retry');
    expect(sidebar.node.querySelector('[data-list="models"] .cs-List-error')!.textContent).toBe('');
  });

  it('reads which states are final from the server, once', async () => {
    const runtimes = [{ name: 'up', resource: 'hpc', state: 'READY' }, { name: 'gone', resource: 'hpc', state: 'DEAD' }];
    const { sidebar, calls } = build({
      'GET states': () => ({ states: [], final: ['DEAD', 'STOPPED', 'COMPLETED'], active: ['READY', 'REQUESTED', 'RUNNING'] }),
      'GET runtimes': () => ({ items: runtimes, total: runtimes.length })
    }, { sections: ['compute'] });
    await sidebar.list('runtimes')!.load();
    await flush();
    const buttons = (key: string) =>
      [...sidebar.node.querySelectorAll(`[data-list="runtimes"] [data-key="${key}"] button`)].map(b => b.textContent);
    expect(buttons('up')).toContain('Stop');
    expect(buttons('gone')).not.toContain('Stop');
    expect(calls.filter(c => c.path === 'states')).toHaveLength(1);
    const second = build({}, { sections: ['compute', 'sessions'] });
    expect(second.calls.filter(c => c.path === 'states')).toHaveLength(0);
  });
});

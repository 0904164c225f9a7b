/**
 * A template's runs pane: its sweeps' progress (points done, running, failed,
 * pending, not run, time left; where each pending task stands in Slurm's queue
 * and when Slurm expects it to start) above the list of runs.
 *
 * Nothing here polls. The pane follows the server's event stream: a `sweep`
 * event carries a sweep's whole progress and repaints its box in place; a
 * `run` event (a single run's state changed), or a sweep event whose counts
 * changed, makes the pane read the runs once more.
 */
import { Api, seg } from './api';

/** One server-sent event, as the sidebar hands it on. */
export type Event = Record<string, any>;

/** What the pane needs from the sidebar. */
export interface RunsContext {
  api: Api;
  show(title: string, body: HTMLElement | string): void;
  /** Calls `listener` with every event until the returned function is called. */
  subscribe?(listener: (event: Event) => void): () => void;
}

export interface TaskInfo {
  job_id: string;
  task: number;
  state: string;
  points: number;
  done: number;
  position: number | null;
  estimated_start: number | null;
}

export interface SweepProgress {
  sweep: string;
  template: string;
  state: string;
  total: number;
  counts: Record<string, number>;
  eta_s: number | null;
  tasks: TaskInfo[];
  final: boolean;
}

function text(value: unknown): string {
  return value === undefined || value === null ? '' : String(value);
}

/** The id and state badge that head a sweep's box and a run's entry. */
function heading(className: string, id: string, state: string): HTMLElement {
  const head = document.createElement('div');
  head.className = className;
  const name = document.createElement('span');
  name.className = 'cs-run-id';
  name.textContent = id;
  name.title = id;
  const badge = document.createElement('span');
  badge.className = 'cs-badge';
  badge.dataset.state = state.toLowerCase();
  badge.textContent = state;
  head.append(name, badge);
  return head;
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

/** "120/200 done · 2 running · 3 failed · 75 pending · 0 not run · about 35 s left" */
export function sweepSummary(p: SweepProgress): string {
  const c = p.counts ?? {};
  const parts = [
    `${c.COMPLETED ?? 0}/${p.total} done`,
    `${c.RUNNING ?? 0} running`,
    `${c.FAILED ?? 0} failed`,
    `${c.PENDING ?? 0} pending`,
    `${c.NOT_RUN ?? 0} not run`
  ];
  if (!p.final) {
    parts.push(p.eta_s === null || p.eta_s === undefined ? 'time left unknown' : `about ${duration(p.eta_s)} left`);
  }
  return parts.join(' · ');
}

/** One line per unfinished task; a pending one says its queue position and Slurm's expected start. */
export function taskLine(t: TaskInfo): string {
  const id = `${t.job_id}_${t.task}`;
  if (t.state === 'PENDING') {
    const where = t.position ? `position ${t.position} in the queue` : 'queued';
    const when = t.estimated_start ? `, expected to start ${new Date(t.estimated_start * 1000).toLocaleTimeString()}` : '';
    return `${id}: pending, ${where}${when} (${t.points} points)`;
  }
  return `${id}: ${t.state.toLowerCase()}, ${t.done}/${t.points} points through`;
}

/** A sweep's progress box (data-sweep = its id); `rerun` is offered once it ended with failed or not-run points. */
export function sweepBox(p: SweepProgress, rerun?: () => Promise<void>): HTMLElement {
  const box = document.createElement('div');
  box.className = 'cs-sweep';
  paintSweep(box, p, rerun);
  return box;
}

export function paintSweep(box: HTMLElement, p: SweepProgress, rerun?: () => Promise<void>): void {
  box.textContent = '';
  box.dataset.sweep = p.sweep;
  box.dataset.state = text(p.state).toLowerCase();
  const head = heading('cs-sweep-head', p.sweep, text(p.state));
  const summary = document.createElement('div');
  summary.className = 'cs-sweep-summary';
  summary.textContent = sweepSummary(p);
  box.append(head, summary);
  if (p.tasks?.length) {
    const tasks = document.createElement('ul');
    tasks.className = 'cs-sweep-tasks';
    for (const t of p.tasks) {
      const item = document.createElement('li');
      item.dataset.task = `${t.job_id}_${t.task}`;
      item.dataset.state = text(t.state).toLowerCase();
      item.textContent = taskLine(t);
      tasks.appendChild(item);
    }
    box.appendChild(tasks);
  }
  const left = (p.counts?.FAILED ?? 0) + (p.counts?.NOT_RUN ?? 0);
  if (p.final && left && rerun) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'jp-mod-styled cs-button';
    button.textContent = `Re-run ${left} failed`;
    button.addEventListener('click', () => {
      button.disabled = true;
      void rerun();
    });
    box.appendChild(button);
  }
}

/** Runs as compact entries (the sidebar is narrow): id and state, then resource, start, outputs or error. */
export function runsTable(runs: any[]): HTMLElement {
  const list = document.createElement('ul');
  list.className = 'cs-runs';
  if (!runs.length) {
    list.textContent = 'no runs yet';
  }
  for (const run of runs) {
    const item = document.createElement('li');
    item.className = 'cs-run';
    item.dataset.run = text(run.id);
    item.dataset.status = text(run.status);
    const head = heading('cs-run-head', text(run.id), text(run.status));
    const info = document.createElement('div');
    info.className = 'cs-run-info';
    const started = typeof run.started === 'number' ? new Date(run.started * 1000).toLocaleTimeString() : text(run.started);
    const outputs = run.outputs && Object.keys(run.outputs).length ? JSON.stringify(run.outputs) : text(run.error);
    info.textContent = [run.resource, started, outputs].filter(Boolean).join(' · ');
    item.append(head, info);
    list.appendChild(item);
  }
  return list;
}

/** Shows the runs pane of template `name` and follows it on the event stream while it is shown. */
export async function showRuns(ctx: RunsContext, name: string, note = ''): Promise<void> {
  const route = `templates/${seg(name)}`;
  const box = document.createElement('div');
  box.className = 'cs-runs-box';
  if (note) {
    const line = document.createElement('pre');
    line.className = 'cs-pre';
    line.textContent = note;
    box.appendChild(line);
  }
  const sweeps = document.createElement('div');
  sweeps.className = 'cs-sweeps';
  const [runs, progress] = await Promise.all([
    ctx.api.list(`${route}/runs`),
    ctx.api.list<SweepProgress>(`${route}/sweeps`).catch(() => ({ items: [] as SweepProgress[], total: 0 }))
  ]);
  const counts = new Map<string, string>();
  const rerun = (id: string) => async () => {
    await ctx.api.post(`${route}/sweeps/${seg(id)}/rerun`, {});
    await reread();
  };
  const paint = (p: SweepProgress) => {
    const found = [...sweeps.querySelectorAll<HTMLElement>('[data-sweep]')].find(b => b.dataset.sweep === p.sweep);
    if (found) {
      paintSweep(found, p, rerun(p.sweep));
    } else {
      sweeps.appendChild(sweepBox(p, rerun(p.sweep)));
    }
    const before = counts.get(p.sweep);
    counts.set(p.sweep, JSON.stringify(p.counts));
    return before !== undefined && before !== counts.get(p.sweep);
  };
  for (const p of progress.items.filter(p => !p.final || p === progress.items[progress.items.length - 1])) {
    paint(p);
  }
  let table = runsTable(runs.items);
  box.append(sweeps, table);
  ctx.show(`Runs of ${name}`, box);

  // Reads the runs again, one read at a time; a change seen during a read asks for one more.
  let reading: Promise<void> | null = null;
  let again = false;
  const reread = async (): Promise<void> => {
    if (reading) {
      again = true;
      return reading;
    }
    reading = (async () => {
      do {
        again = false;
        const fresh = runsTable((await ctx.api.list(`${route}/runs`)).items);
        table.replaceWith(fresh);
        table = fresh;
      } while (again && box.isConnected);
    })().finally(() => (reading = null));
    return reading;
  };
  if (!ctx.subscribe) {
    return;
  }
  const stop = ctx.subscribe(event => {
    if (!box.isConnected) {
      stop();
      return;
    }
    if (event.template !== name) {
      return;
    }
    if (event.kind === 'sweep') {
      const changed = paint({ sweep: event.id, template: event.template, state: event.state, final: event.final, ...event.progress });
      if (changed || event.final) {
        void reread();
      }
    } else if (event.kind === 'run') {
      void reread();
    }
  });
}

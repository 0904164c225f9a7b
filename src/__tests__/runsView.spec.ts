import { Event, showRuns, sweepSummary } from '../runsView';
import { fakeApi, flush } from './helpers';

function progress(counts: Record<string, number>, extra: Record<string, unknown> = {}) {
  return { total: 6, counts, eta_s: 12, tasks: [], ...extra };
}

describe('runs pane with sweeps', () => {
  it('follows a sweep on the event stream: counts, queue places, runs read again only when points end', async () => {
    const setIntervalSpy = jest.spyOn(window, 'setInterval');
    const runs = [0, 1, 2, 3, 4, 5].map(p => ({ id: `inc-${p}`, point: p, status: 'PENDING', resource: 'hpc' }));
    const { api, calls } = fakeApi({
      'GET templates/inc/runs': () => ({ items: runs.map(r => ({ ...r })), total: runs.length }),
      'GET templates/inc/sweeps': () => ({
        items: [{ sweep: 's1', template: 'inc', state: 'PENDING', final: false, ...progress({ PENDING: 6 }, {
          eta_s: null,
          tasks: [
            { job_id: 'hpc.7', task: 0, state: 'PENDING', points: 3, done: 0, position: 1, estimated_start: null },
            { job_id: 'hpc.7', task: 1, state: 'PENDING', points: 3, done: 0, position: 2, estimated_start: 1796160000 }
          ]
        }) }],
        total: 1
      }),
      'POST templates/inc/sweeps/s1/rerun': () => ({ status: 202, body: { items: [runs[3]], total: 1 } })
    });
    const listeners: ((event: Event) => void)[] = [];
    const pane = document.createElement('div');
    document.body.appendChild(pane);
    const ctx = {
      api,
      show: (_title: string, body: HTMLElement | string) => {
        pane.textContent = '';
        pane.append(body);
      },
      subscribe: (listener: (event: Event) => void) => {
        listeners.push(listener);
        return () => listeners.splice(listeners.indexOf(listener), 1);
      }
    };
    await showRuns(ctx, 'inc');
    const box = () => pane.querySelector<HTMLElement>('[data-sweep="s1"]')!;
    expect(box().textContent).toContain('0/6 done · 0 running · 0 failed · 6 pending · 0 not run · time left unknown');
    expect(box().textContent).toContain('hpc.7_0: pending, position 1 in the queue (3 points)');
    expect(box().textContent).toContain('hpc.7_1: pending, position 2 in the queue, expected to start');
    const reads = () => calls.filter(c => c.path === 'templates/inc/runs').length;
    expect(reads()).toBe(1);

    const send = (event: Event) => listeners.slice().forEach(l => l(event));
    // A sweep event with the same counts repaints the box but reads nothing.
    send({ kind: 'sweep', id: 's1', template: 'inc', state: 'RUNNING', final: false, progress: progress({ PENDING: 5, RUNNING: 1 }, {
      tasks: [{ job_id: 'hpc.7', task: 0, state: 'RUNNING', points: 3, done: 0, position: null, estimated_start: null }]
    }) });
    await flush();
    expect(box().textContent).toContain('hpc.7_0: running, 0/3 points through');
    expect(box().textContent).toContain('about 12 s left');
    const afterFirst = reads();
    // Points ended: the runs are read again, once.
    runs.forEach(r => (r.status = r.point === 3 ? 'FAILED' : 'COMPLETED'));
    send({ kind: 'sweep', id: 's1', template: 'inc', state: 'FAILED', final: true, progress: progress({ COMPLETED: 5, FAILED: 1 }) });
    send({ kind: 'sweep', id: 'other', template: 'another', state: 'RUNNING', final: false, progress: progress({}) });
    await flush();
    await flush();
    expect(reads()).toBe(afterFirst + 1);
    expect(pane.querySelector('.cs-run[data-run="inc-3"]')!.textContent).toContain('FAILED');
    expect(box().dataset.state).toBe('failed');
    const rerun = [...box().querySelectorAll('button')].find(b => b.textContent === 'Re-run 1 failed')!;
    rerun.click();
    await flush();
    await flush();
    expect(calls.some(c => c.method === 'POST' && c.path === 'templates/inc/sweeps/s1/rerun')).toBe(true);
    expect(setIntervalSpy).not.toHaveBeenCalled(); // followed on events, never polled
    pane.remove();
    send({ kind: 'run', id: 'x', template: 'inc', state: 'RUNNING', final: false });
    expect(listeners).toHaveLength(0); // a pane no longer shown stops listening
  });

  it('summarises a finished sweep without a time left', () => {
    expect(sweepSummary({ sweep: 's', template: 't', state: 'COMPLETED', final: true, ...progress({ COMPLETED: 6 }) }))
      .toBe('6/6 done · 0 running · 0 failed · 0 pending · 0 not run');
  });
});

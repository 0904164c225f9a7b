/**
 * The sidebar in a real JupyterLab: 10,000 datasets timed, every section's screenshot, the
 * resource form registering the loopback cluster, a notebook moving onto it with
 * %request_runtime / %switch_runtime, live runtime state, layout restored, dark theme.
 */
import { expect, Page, test } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

import { clusterEnv } from './cluster';

const SHOTS = path.join(__dirname, '..', 'test-results', 'screenshots');
const SECTIONS = ['storage', 'datasets', 'compute', 'sessions', 'applications', 'models'];

async function shot(page: Page, name: string, selector?: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  if (selector) {
    await page.locator(selector).screenshot({ path: file });
  } else {
    await page.screenshot({ path: file });
  }
}

/** Runs `source` in a new cell of the current notebook and returns that cell's output text. */
async function runCell(page: Page, source: string, expected: RegExp, timeout = 120_000): Promise<string> {
  const index = await page.evaluate(async src => {
    const app = (window as any).jupyterapp;
    const panel = app.shell.currentWidget;
    const notebook = panel.content;
    const cell = notebook.activeCell;
    if (cell.model.sharedModel.getSource() !== '') {
      await app.commands.execute('notebook:insert-cell-below');
    }
    notebook.activeCell.model.sharedModel.setSource(src);
    const at = notebook.activeCellIndex;
    await app.commands.execute('notebook:run-cell');
    return at;
  }, source);
  const output = page.locator('.jp-Notebook .jp-Cell').nth(index).locator('.jp-OutputArea');
  await expect(output).toContainText(expected, { timeout });
  return (await output.innerText()).trim();
}

test('sidebar over a real JupyterLab and the loopback cluster', async ({ page }) => {
  const cluster = clusterEnv();
  const token = process.env.CS_UI_TOKEN!;
  await page.goto(`/lab?token=${token}`);
  await page.waitForSelector('#jupyterlab-splash', { state: 'detached', timeout: 60_000 });
  const tab = page.locator('.jp-SideBar [data-id="cybershuttle-sidebar"]');
  await expect(tab).toBeVisible();

  await test.step('10,000 datasets appear in under a second', async () => {
    // Timed inside the page: from the click that opens the panel to the first rows of the
    // 10,000-entry list painted, then to the last row after jumping to the end.
    const times = await page.evaluate(async () => {
      const until = (check: () => boolean) =>
        new Promise<number>((resolve, reject) => {
          const limit = performance.now() + 20_000;
          const poll = () => {
            if (check()) resolve(performance.now());
            else if (performance.now() > limit) reject(new Error('timed out'));
            else requestAnimationFrame(poll);
          };
          poll();
        });
      const list = () => document.querySelector<HTMLElement>('[data-list="datasets"]');
      const row = (key: string) => list()?.querySelector(`.cs-WindowedList-row[data-key="${key}"]`);
      const start = performance.now();
      // What a click on the tab does (Lumino tab bars act on pointer events, not click()).
      (window as any).jupyterapp.shell.activateById('cybershuttle-sidebar');
      const shown = await until(() => list()?.dataset.total === '10000' && !!row('ds-00000'));
      const rows = list()!.querySelectorAll('.cs-WindowedList-row').length;
      const scroller = list()!.querySelector<HTMLElement>('.cs-WindowedList')!;
      const jump = performance.now();
      scroller.scrollTop = scroller.scrollHeight;
      const end = await until(() => !!row('ds-09999'));
      return { open: shown - start, rows, scrollToEnd: end - jump };
    });
    console.log(`sidebar_10000_entries_ms=${times.open.toFixed(0)} (rows in DOM: ${times.rows}; ` +
      `jump to the last entry: ${times.scrollToEnd.toFixed(0)} ms)`);
    // Smoothness: scroll top to bottom in 60 frames; rows far ahead show a placeholder until their page arrives.
    const frames = await page.evaluate(async () => {
      const scroller = document.querySelector<HTMLElement>('[data-list="datasets"] .cs-WindowedList')!;
      scroller.scrollTop = 0;
      await new Promise(resolve => requestAnimationFrame(resolve));
      const gaps: number[] = [];
      let last = performance.now();
      for (let i = 1; i <= 60; i++) {
        scroller.scrollTop = ((scroller.scrollHeight - scroller.clientHeight) * i) / 60;
        await new Promise(resolve => requestAnimationFrame(resolve));
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }
      gaps.sort((a, b) => a - b);
      scroller.scrollTop = 0;
      return { p95: gaps[Math.floor(gaps.length * 0.95)], max: gaps[gaps.length - 1] };
    });
    console.log(`sidebar_scroll_frame_p95_ms=${frames.p95.toFixed(1)} (max ${frames.max.toFixed(1)} ms, 60 frames over 10,000 rows)`);
    expect(frames.p95).toBeLessThan(500);

    // Baseline, same page and server: the whole list fetched at once and rendered without windowing.
    const naive = await page.evaluate(async tok => {
      const start = performance.now();
      const response = await fetch(`/cybershuttle/api/v1/datasets?limit=10000&token=${tok}`);
      const { items } = await response.json();
      const box = document.createElement('div');
      box.style.cssText = 'position:absolute;left:-9999px;top:0;width:260px;height:300px;overflow:auto';
      document.body.appendChild(box);
      for (const item of items) {
        const row = document.createElement('div');
        row.className = 'cs-WindowedList-row';
        row.style.position = 'static';
        const name = document.createElement('span');
        name.className = 'cs-row-name';
        name.textContent = item.name;
        const info = document.createElement('span');
        info.className = 'cs-row-info';
        info.textContent = item.description;
        row.append(name, info);
        box.appendChild(row);
      }
      void box.offsetHeight; // force layout
      await new Promise(resolve => requestAnimationFrame(resolve));
      const ms = performance.now() - start;
      box.remove();
      return { ms, count: items.length };
    }, token);
    expect(naive.count).toBe(10000);
    console.log(`baseline_full_render_10000_ms=${naive.ms.toFixed(0)} (fetch all + 10,000 rows in the DOM)`);
    console.log(`sidebar_vs_full_render_ratio=${(times.open / naive.ms).toFixed(2)}`);
    expect(times.rows).toBeLessThan(60);
    // The goal is < 1 s (printed above); the bound leaves room for a CI machine shared by other jobs.
    expect(times.open).toBeLessThan(2500);

    const search = page.locator('.cs-Search');
    const began = Date.now();
    await search.fill('ds-09876');
    await expect(page.locator('[data-list="datasets"] .cs-WindowedList-row')).toHaveCount(1);
    await expect(page.locator('[data-list="datasets"] [data-key="ds-09876"]')).toBeVisible();
    console.log(`sidebar_search_10000_ms=${Date.now() - began} (including the 200 ms typing delay)`);
    await search.fill('');
    await expect(page.locator('[data-list="datasets"]')).toHaveAttribute('data-total', '10000');
  });

  await test.step('register the loopback cluster through the form', async () => {
    await page.locator('[data-list="compute"] .cs-List-header button', { hasText: 'Register…' }).click();
    const form = page.locator('form.cs-ResourceForm');
    await expect(form).toBeVisible();
    await form.locator('select[name="kind"]').selectOption('slurm');
    // A wrong value is caught in the browser before anything is sent.
    await form.locator('input[name="name"]').fill('bad name');
    await expect(form.locator('.cs-field:has(input[name="name"]) .cs-field-error')).toContainText('may hold letters');
    await form.locator('input[name="name"]').fill('uicluster');
    await form.locator('input[name="host"]').fill(cluster.CS_TEST_HOST);
    await form.locator('input[name="port"]').fill(cluster.CS_TEST_PORT);
    await form.locator('input[name="user"]').fill(cluster.CS_TEST_USER);
    await form.locator('input[name="key_file"]').fill(cluster.CS_TEST_KEY);
    await form.locator('input[name="known_hosts"]').fill(cluster.CS_TEST_KNOWN_HOSTS);
    await form.locator('input[name="partition"]').fill(cluster.CS_TEST_SLURM_PARTITION);
    await expect(form.locator('button.cs-save')).toBeDisabled();
    await form.locator('button.cs-test').click();
    await expect(form.locator('.cs-ResourceForm-status')).toContainText('All required checks passed', { timeout: 60_000 });
    expect(await form.locator('.cs-check').count()).toBeGreaterThan(1);
    // Optional checks may fail (no conda here); required ones may not.
    await expect(form.locator('.cs-check-failed', { hasNotText: '(optional)' })).toHaveCount(0);
    await shot(page, 'register-form');
    await form.locator('button.cs-save').click();
    await expect(form.locator('.cs-ResourceForm-status')).toContainText("'uicluster' is registered", { timeout: 60_000 });
    const row = page.locator('[data-list="compute"] [data-key="uicluster"]');
    await expect(row).toBeVisible({ timeout: 30_000 });
    await expect(row.locator('.cs-badge')).toContainText('up');
  });

  await test.step('run a template from the form made from its spec, and see the run listed', async () => {
    const row = page.locator('[data-list="templates"] [data-key="square"]');
    await row.hover();
    await row.locator('button', { hasText: 'Run…' }).click();
    const detail = page.locator('[data-section="sessions"] .cs-Section-detail');
    const side = detail.locator('input[name="side"]');
    await expect(side).toHaveValue('2');
    await side.fill('500');
    await detail.locator('button', { hasText: 'Run' }).click();
    await expect(detail.locator('.cs-field-error')).toContainText('side must be at most 100');
    await side.fill('7');
    await detail.locator('select[name="resource"]').selectOption('local');
    await detail.locator('button', { hasText: 'Run' }).click();
    const run = detail.locator('.cs-run[data-status="COMPLETED"]');
    await expect(run).toHaveCount(1, { timeout: 90_000 });
    await expect(run).toContainText('49');
    await expect(detail).toContainText('Runs of square');
    await shot(page, 'template-run', '[data-section="sessions"]');
  });

  await test.step("the cluster's applications (its Lmod modules)", async () => {
    const list = page.locator('[data-list="applications"]');
    await list.locator('select[name="resource"]').selectOption('uicluster');
    // Gathering asks the cluster (Lmod spider, pip): seconds, during which the list is marked loading.
    await expect(list).not.toHaveAttribute('data-loading', 'true', { timeout: 90_000 });
    await expect(list.locator('.cs-row-info', { hasText: 'pip · uicluster' }).first()).toBeAttached();
    await expect(list.locator('.cs-row-info', { hasText: 'pip · local' })).toHaveCount(0);
    await expect(list.locator('[data-key="hello"]')).toBeVisible();
    await list.locator('[data-key="hello"]').hover();
    await expect(list.locator('[data-key="hello"] button', { hasText: 'Load…' })).toBeVisible();
    await shot(page, 'section-applications-cluster', '[data-section="applications"]');
    await list.locator('select[name="resource"]').selectOption('');
  });

  await test.step('browse a storage', async () => {
    const row = page.locator('[data-list="storage"] [data-key="samples"]');
    await expect(row.locator('.cs-badge')).toHaveText('read-only');
    await row.hover();
    await row.locator('button', { hasText: 'Browse' }).click();
    const detail = page.locator('[data-section="storage"] .cs-Section-detail');
    await expect(detail).toContainText('samples:/');
    await expect(detail.locator('li[data-entry="weather.csv"]')).toContainText('B');
  });

  await test.step('screenshots of every section', async () => {
    for (const section of SECTIONS) {
      await shot(page, `section-${section}`, `[data-section="${section}"]`);
    }
    await shot(page, 'sidebar-light', '#cybershuttle-sidebar');
  });

  await test.step('a notebook moves onto the cluster with %request_runtime / %switch_runtime', async () => {
    await page.evaluate(() => (window as any).jupyterapp.commands.execute('notebook:create-new', { kernelName: 'python3' }));
    await expect(page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator, .jp-Notebook-ExecutionIndicator').first()).toBeAttached({ timeout: 30_000 });
    await page.waitForFunction(() => {
      const panel = (window as any).jupyterapp.shell.currentWidget;
      return panel?.sessionContext?.session?.kernel?.status === 'idle';
    }, undefined, { timeout: 60_000 });
    await runCell(page, 'import cybershuttle_magic\n%request_runtime uirt --resource uicluster --walltime 5\n%switch_runtime uirt', /uirt/);
    const out = await runCell(page, 'import socket, getpass\nprint(socket.gethostname(), getpass.getuser())', /csuser/);
    const [host, user] = out.split(/\s+/);
    expect(user).toBe(cluster.CS_TEST_USER);
    expect(host.length).toBeGreaterThan(0);
    console.log(`remote runtime answered: host=${host} user=${user}`);
    await shot(page, 'notebook-on-runtime');
    // The sidebar learns of the runtime and its Slurm job from the event stream.
    await expect(page.locator('[data-list="runtimes"] [data-key="uirt"]')).toBeVisible({ timeout: 30_000 });
    await shot(page, 'section-compute-live', '[data-section="compute"]');
    // The runtime's Slurm job is live in Jobs: read its logs, then cancel it from the sidebar;
    // the runtime is then reported gone through the event stream.
    const job = page.locator('[data-list="jobs"] .cs-WindowedList-row', { has: page.locator('.cs-badge', { hasText: 'RUNNING' }) }).first();
    await expect(job).toBeVisible({ timeout: 30_000 });
    const computeDetail = page.locator('[data-section="compute"] .cs-Section-detail');
    await job.hover();
    await job.locator('button', { hasText: 'Logs' }).click();
    await expect(computeDetail).toContainText('Logs of job');
    await job.hover();
    await job.locator('button', { hasText: 'Cancel' }).click();
    await expect(computeDetail).toContainText('Cancelled job', { timeout: 90_000 });
    await expect(page.locator('[data-list="runtimes"] [data-key="uirt"] .cs-badge')).toHaveText(/DEAD|STOPPED/i, { timeout: 30_000 });
    await shot(page, 'section-compute-cancelled', '[data-section="compute"]');
    await runCell(page, '%stop_runtime uirt', /stopped/i);
  });

  await test.step('settings schema is served to JupyterLab', async () => {
    const response = await page.request.get(`/lab/api/settings/jupyterlab-cybershuttle:plugin?token=${token}`);
    expect(response.ok()).toBe(true);
    const properties = (await response.json()).schema.properties;
    expect(properties.pageSize.default).toBe(200);
    expect(properties.sections.default).toEqual(SECTIONS);
  });

  await test.step('the sidebar is restored after a reload', async () => {
    await page.waitForTimeout(1500); // the workspace is saved shortly after a layout change
    await page.reload();
    await page.waitForSelector('#jupyterlab-splash', { state: 'detached', timeout: 60_000 });
    await expect(page.locator('#cybershuttle-sidebar')).toBeVisible();
    await expect(page.locator('[data-list="datasets"]')).toHaveAttribute('data-total', '10000');
  });

  await test.step('dark theme', async () => {
    const background = () => page.locator('#cybershuttle-sidebar').evaluate(el => getComputedStyle(el).backgroundColor);
    const light = await background();
    await page.evaluate(() => (window as any).jupyterapp.commands.execute('apputils:change-theme', { theme: 'JupyterLab Dark' }));
    await expect.poll(background, { timeout: 20_000 }).not.toBe(light);
    const [r, g, b] = (await background()).match(/\d+/g)!.map(Number);
    expect(r + g + b).toBeLessThan(3 * 100);
    await shot(page, 'sidebar-dark', '#cybershuttle-sidebar');
    await page.evaluate(() => (window as any).jupyterapp.commands.execute('apputils:change-theme', { theme: 'JupyterLab Light' }));
  });
});

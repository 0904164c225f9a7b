/**
 * The site's JupyterHub (deploy/jupyterhub/, started here by ui-tests/start-hub.sh): two real OS
 * users log in through the hub's PAM login page; csuser publishes a dataset from the sidebar, csother
 * sees it with its owner and cannot remove it; the REST API and the event stream answer under each
 * user's prefix (/user/NAME/). Each user's server runs as that user, on the PostgreSQL site catalog.
 */
import { Browser, expect, Page, test } from '@playwright/test';
import { ChildProcess, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { clusterEnv } from './cluster';

const ROOT = path.join(__dirname, '..', '..');
const SHOTS = path.join(__dirname, '..', 'test-results', 'screenshots');
const PORT = Number(process.env.CS_HUB_PORT ?? 18000);
const HUB = `http://127.0.0.1:${PORT}`;

let hub: ChildProcess | undefined;
let hubLog = '';

async function hubAnswers(): Promise<boolean> {
  try {
    return (await fetch(`${HUB}/hub/api/`)).ok;
  } catch {
    return false;
  }
}

test.beforeAll(async () => {
  test.setTimeout(90_000);
  expect(await hubAnswers(), `port ${PORT} is taken by another hub (set CS_HUB_PORT)`).toBe(false);
  // Its own process group, so that a hung hub can still be stopped with everything it started.
  hub = spawn('bash', [path.join(ROOT, 'ui-tests/start-hub.sh')], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CS_HUB_PORT: String(PORT) }
  });
  const keep = (chunk: Buffer) => (hubLog = (hubLog + chunk.toString()).slice(-20_000));
  hub.stdout!.on('data', keep);
  hub.stderr!.on('data', keep);
  const deadline = Date.now() + 80_000;
  while (!(await hubAnswers())) {
    if (hub.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the hub did not start:\n${hubLog}`);
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
});

test.afterAll(async () => {
  if (!hub || hub.exitCode !== null) {
    return;
  }
  const exited = new Promise(resolve => hub!.once('exit', resolve));
  // SIGTERM: the hub stops both users' servers and the proxy; start-hub.sh removes its state.
  hub.kill('SIGTERM');
  const timer = setTimeout(() => process.kill(-hub!.pid!, 'SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
});

test.afterEach(async ({}, info) => {
  if (info.status !== info.expectedStatus) {
    await info.attach('hub.log', { body: hubLog, contentType: 'text/plain' });
  }
});

/** A browser of its own for `user`, logged in through the hub's login page, in JupyterLab. */
async function logIn(browser: Browser, user: string, password: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${HUB}/hub/login`);
  await page.fill('#username_input', user);
  await page.fill('#password_input', password);
  await page.click('#login_submit');
  // The hub spawns the server as `user`, then the single-user server's OAuth round trip lands in JupyterLab.
  await page.waitForURL(new RegExp(`/user/${user}/lab`), { timeout: 90_000 });
  await page.waitForSelector('#jupyterlab-splash', { state: 'detached', timeout: 60_000 });
  return page;
}

/** Opens the Cybershuttle panel and narrows every list to `text`. */
async function openSidebar(page: Page, text: string): Promise<void> {
  const tab = page.locator('.jp-SideBar [data-id="cybershuttle-sidebar"]');
  const search = page.locator('.cs-Search');
  await expect(tab).toBeVisible();
  // JupyterLab may restore the panel open from the user's last visit (its workspace lives in the
  // user's home): a click would then close it.
  await expect(async () => {
    if (!(await search.isVisible())) {
      await tab.click();
    }
    await expect(search).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 30_000 });
  await search.fill(text);
}

/** A REST call from inside the page, as the sidebar makes it: the user's cookie, the XSRF header. */
async function api(page: Page, user: string, route: string, method = 'GET'): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ url, method }) => {
      const xsrf = document.cookie.match(/(?:^|; )_xsrf=([^;]*)/)?.[1] ?? '';
      const response = await fetch(url, { method, headers: { 'X-XSRFToken': decodeURIComponent(xsrf) } });
      return { status: response.status, body: await response.json() };
    },
    { url: `/user/${user}/cybershuttle/api/v1/${route}`, method }
  );
}

async function shot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

test('two hub users: one publishes a dataset from the sidebar, the other sees its owner and cannot remove it', async ({ browser }) => {
  test.setTimeout(180_000);
  const cluster = clusterEnv();
  const [owner, other] = [cluster.CS_TEST_USER, cluster.CS_TEST_OTHER_USER];
  const password = (user: string) => fs.readFileSync(path.join(cluster.CS_TEST_HUB_PASSWORDS, user), 'utf8').trim();
  const name = `hub-shared-${randomBytes(3).toString('hex')}`;
  const row = (page: Page) => page.locator(`[data-list="datasets"] .cs-WindowedList-row[data-key="${name}"]`);

  const first = await logIn(browser, owner, password(owner));
  // The sidebar's own event stream, under the user's prefix.
  const stream = first.waitForResponse(r => r.url().includes(`/user/${owner}/cybershuttle/api/v1/events`) && r.status() === 200);

  await test.step(`${owner} publishes ${name} from the sidebar`, async () => {
    await openSidebar(first, name);
    await stream;
    await first.locator('[data-list="datasets"] .cs-List-header button', { hasText: 'Publish…' }).click();
    const form = first.locator('[data-section="datasets"] .cs-Section-detail');
    await form.locator('[name="dataset-name"]').fill(name);
    await form.locator('[name="dataset-location"]').fill('https://data.example.org/shared/table.csv');
    await form.locator('[name="dataset-description"]').fill('a table for the whole lab');
    await expect(form.locator('[name="public"]')).toBeChecked();
    await form.locator('button', { hasText: /^Publish$/ }).click();
    await expect(form).toContainText(`Published ${name}`);
    await expect(row(first)).toContainText(`a table for the whole lab · by ${owner}`);
    // Row actions show on hover.
    await row(first).hover();
    await expect(row(first).locator('button', { hasText: 'Remove' })).toBeVisible();
  });

  const second = await logIn(browser, other, password(other));
  await test.step(`${other} sees it with its owner and has no Remove`, async () => {
    await openSidebar(second, name);
    await expect(row(second)).toContainText(`by ${owner}`);
    await expect(row(second).locator('.cs-badge')).toHaveText('public');
    await shot(second, 'hub-other-user-sees-owner');
    await row(second).hover();
    await expect(row(second).locator('button', { hasText: 'Details' })).toBeVisible();
    await expect(row(second).locator('button', { hasText: 'Remove' })).toHaveCount(0);
    // The server runs as that OS user: the catalog says so, not a variable anybody could set.
    const listed = await api(second, other, `datasets?q=${name}`);
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((d: any) => [d.name, d.owner, d.mine])).toEqual([[name, owner, false]]);
  });

  await test.step(`${other} cannot remove it through the API either`, async () => {
    const refused = await api(second, other, `datasets/${name}/remove`, 'POST');
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    expect(refused.body.error).toContain(owner);
    const still = await api(first, owner, `datasets/${name}`);
    expect([still.status, still.body.owner]).toEqual([200, owner]);
  });

  await test.step(`${owner} removes it`, async () => {
    await row(first).hover();
    await row(first).locator('button', { hasText: 'Remove' }).click();
    await expect(first.locator('[data-section="datasets"] .cs-Section-detail')).toContainText(`Removed ${name}`);
    await expect(row(first)).toHaveCount(0);
    expect((await api(second, other, `datasets/${name}`)).status).toBe(404);
  });
  await first.context().close();
  await second.context().close();
});

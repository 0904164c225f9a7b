/**
 * Browser tests against a real `jupyter lab` (ui-tests/start-lab.sh) in Debian's Chromium:
 * playwright never downloads a browser here.
 */
import { defineConfig } from '@playwright/test';
import { randomBytes } from 'crypto';

const port = Number(process.env.CS_UI_PORT ?? 18888);
// Workers re-read this file: pass the token on through the environment so all agree.
const token = (process.env.CS_UI_TOKEN ??= randomBytes(16).toString('hex'));
process.env.CS_UI_PORT = String(port);

export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  timeout: 150_000,
  expect: { timeout: 15_000 },
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    viewport: { width: 1400, height: 900 },
    video: 'off',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CS_CHROMIUM ?? '/usr/bin/chromium',
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage',
        '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'
      ]
    }
  },
  webServer: {
    command: 'bash ui-tests/start-lab.sh',
    cwd: '..',
    url: `http://127.0.0.1:${port}/api/status?token=${token}`,
    timeout: 120_000,
    reuseExistingServer: false,
    // SIGTERM (not Playwright's default SIGKILL) so start-lab.sh stops leftover runtimes and removes its temp dir.
    gracefulShutdown: { signal: 'SIGTERM', timeout: 30_000 },
    stdout: 'pipe',
    stderr: 'pipe',
    env: { CS_UI_PORT: String(port), CS_UI_TOKEN: token }
  }
});

/** What the browser tests read of the loopback test cluster (tests/cluster/cluster.sh). */
import { execFileSync } from 'child_process';
import * as path from 'path';

/** The cluster's settings, from the script that runs it (`cluster.sh env`). */
export function clusterEnv(): Record<string, string> {
  const root = path.join(__dirname, '..', '..');
  const out = execFileSync('bash', [path.join(root, 'tests/cluster/cluster.sh'), 'env'], { encoding: 'utf8' });
  const env: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const match = /^export (\w+)=(.*)$/.exec(line.trim());
    if (match) {
      env[match[1]] = match[2].replace(/^'(.*)'$/, '$1');
    }
  }
  return env;
}

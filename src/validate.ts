/** Field checks shared by the forms; each returns an error sentence or ''. */

/** The name rule of cybershuttle.names: letters, digits, then also . _ - */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function checkName(value: string, what = 'name'): string {
  if (!value) {
    return `${what} is required`;
  }
  if (value.length > 128) {
    return `${what} is longer than 128 characters`;
  }
  return NAME_PATTERN.test(value)
    ? ''
    : `${what} may hold letters, digits, '.', '_' and '-', and must start with a letter or digit`;
}

export function checkHost(value: string): string {
  if (!value) {
    return 'host is required for ssh and slurm resources';
  }
  return /^[A-Za-z0-9.:\[\]_-]+$/.test(value) && !value.startsWith('-')
    ? ''
    : 'host must be a host name or an IP address';
}

export function checkPort(value: string): string {
  if (!/^\d+$/.test(value)) {
    return 'port must be a number from 1 to 65535';
  }
  const port = Number(value);
  return port >= 1 && port <= 65535 ? '' : 'port must be a number from 1 to 65535';
}

export function checkPath(value: string, what: string): string {
  if (!value) {
    return '';
  }
  return value.startsWith('/') || value.startsWith('~') ? '' : `${what} must be an absolute path (or start with ~)`;
}

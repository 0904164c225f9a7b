/** A fake REST server for unit tests: routes map to handlers; every call is recorded. */
import { Api } from '../api';

export interface Call {
  path: string;
  method: string;
  body: any;
}

export type Handler = (url: URL, body: any) => { status?: number; body: unknown } | unknown;

/** What Api reads of a fetch Response (jsdom has no Response class). */
function reply(status: number, payload: unknown): Response {
  const text = JSON.stringify(payload);
  return { ok: status >= 200 && status < 300, status, text: async () => text } as unknown as Response;
}

export function fakeApi(routes: Record<string, Handler>): { api: Api; calls: Call[] } {
  const calls: Call[] = [];
  const api = new Api(async (path, init = {}) => {
    const url = new URL(path, 'http://server/');
    const method = init.method ?? 'GET';
    const body = init.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ path, method, body });
    const handler = routes[`${method} ${url.pathname.slice(1)}`];
    if (!handler) {
      return reply(404, { error: `no route ${method} ${url.pathname}` });
    }
    const out = handler(url, body) as any;
    const status = out && typeof out === 'object' && 'status' in out && 'body' in out ? out.status : 200;
    const payload = out && typeof out === 'object' && 'status' in out && 'body' in out ? out.body : out;
    return reply(status, payload);
  });
  return { api, calls };
}

/** Items 0..n-1 served page by page, filtered by ?q= like the server does. */
export function pagedRoute(names: string[]): Handler {
  return url => {
    const q = url.searchParams.get('q') ?? '';
    const matching = names.filter(n => n.includes(q));
    const offset = Number(url.searchParams.get('offset') ?? 0);
    const limit = Number(url.searchParams.get('limit') ?? matching.length);
    return { items: matching.slice(offset, offset + limit).map(name => ({ name })), total: matching.length };
  };
}

export const flush = () => new Promise(resolve => setTimeout(resolve, 0));

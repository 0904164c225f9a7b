/**
 * The REST client the sidebar uses. It knows the route shapes of
 * /cybershuttle/api/v1 and nothing of JupyterLab: the caller hands in a
 * `send` function (ServerConnection in the app, a fake in unit tests), so
 * authentication and XSRF stay JupyterLab's business.
 */

export const API_PREFIX = 'cybershuttle/api/v1';

/** Sends a request to a path below the API prefix. */
export type Send = (path: string, init?: RequestInit) => Promise<Response>;

/** A list page as every list route returns it. */
export interface Page<T> {
  items: T[];
  total: number;
}

/** A failed call; `message` is the server's own sentence, meant for a person. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export interface ListQuery {
  q?: string;
  limit?: number;
  offset?: number;
  [extra: string]: string | number | undefined;
}

/** Builds `path?k=v&...`, leaving out empty values. */
export function withQuery(path: string, query: ListQuery = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') {
      params.set(key, String(value));
    }
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Quotes one path segment (a name) for use in a route. */
export function seg(name: string): string {
  return encodeURIComponent(name);
}

export class Api {
  constructor(private readonly send: Send) {}

  async get<T = any>(path: string, query?: ListQuery): Promise<T> {
    return this.call<T>(withQuery(path, query), { method: 'GET' });
  }

  async post<T = any>(path: string, body: unknown = {}, query?: ListQuery): Promise<T> {
    return this.call<T>(withQuery(path, query), {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json' }
    });
  }

  async list<T = any>(path: string, query?: ListQuery): Promise<Page<T>> {
    const page = await this.get<Page<T> | T[]>(path, query);
    // Tolerate a bare array so a route that forgot the envelope still shows.
    if (Array.isArray(page)) {
      return { items: page, total: page.length };
    }
    return { items: page.items ?? [], total: page.total ?? (page.items ?? []).length };
  }

  private async call<T>(path: string, init: RequestInit): Promise<T> {
    const response = await this.send(path, init);
    const text = await response.text();
    let body: any = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = { error: text };
      }
    }
    if (!response.ok) {
      const message =
        (body && typeof body.error === 'string' && body.error) ||
        (body && typeof body.message === 'string' && body.message) ||
        `${init.method} ${path} failed with HTTP ${response.status}`;
      throw new ApiError(message, response.status);
    }
    return body as T;
  }
}

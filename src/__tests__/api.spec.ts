import { ApiError, withQuery } from '../api';
import { fakeApi } from './helpers';

describe('Api', () => {
  it('builds queries without empty values', () => {
    expect(withQuery('datasets', { q: '', limit: 10, offset: 0 })).toBe('datasets?limit=10&offset=0');
    expect(withQuery('compute')).toBe('compute');
  });

  it("raises the server's own error message with its status", async () => {
    const { api } = fakeApi({ 'GET compute/x': () => ({ status: 404, body: { error: "no compute resource named 'x': see 'cybershuttle compute list'" } }) });
    const error = await api.get('compute/x').catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(404);
    expect(error.message).toContain("no compute resource named 'x'");
  });

  it('posts JSON and reads list envelopes', async () => {
    const { api, calls } = fakeApi({
      'POST storage/copy': (_url, body) => ({ copied: body.src }),
      'GET datasets': () => ({ items: [{ name: 'a' }], total: 7 })
    });
    expect(await api.post('storage/copy', { src: 'a:/x', dst: 'b:/' })).toEqual({ copied: 'a:/x' });
    expect(calls[0].body).toEqual({ src: 'a:/x', dst: 'b:/' });
    expect(await api.list('datasets')).toEqual({ items: [{ name: 'a' }], total: 7 });
  });
});

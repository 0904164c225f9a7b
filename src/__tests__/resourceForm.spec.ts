import { ResourceForm } from '../resourceForm';
import { fakeApi, flush } from './helpers';

const CLUSTER = { name: 'testcluster', kind: 'slurm', host: '127.0.0.1', port: '2222', user: 'csuser', key_file: '/keys/csuser', known_hosts: '/kh', partition: 'debug' };

function setup(checks: any[], saved = true) {
  const { api, calls } = fakeApi({
    'POST compute': (url, body) => ({ checks, saved: url.searchParams.get('check_only') ? false : saved, name: body.name })
  });
  const savedNames: string[] = [];
  const form = new ResourceForm(api, name => savedNames.push(name));
  document.body.appendChild(form.node);
  const q = (sel: string) => form.node.querySelector(sel) as HTMLElement;
  return { form, calls, savedNames, q };
}

describe('ResourceForm', () => {
  it('marks invalid fields and sends nothing', async () => {
    const { form, calls, q } = setup([]);
    form.fill({ kind: 'ssh', name: 'bad name', host: '', port: '70000', key_file: 'relative/key' });
    expect(await form.test()).toBeUndefined();
    expect(calls).toHaveLength(0);
    const errors = [...form.node.querySelectorAll('.cs-field-error')].map(e => e.textContent).filter(Boolean);
    expect(errors.join('|')).toMatch(/name may hold letters/);
    expect(errors.join('|')).toMatch(/host is required/);
    expect(errors.join('|')).toMatch(/port must be a number from 1 to 65535/);
    expect(errors.join('|')).toMatch(/key file must be an absolute path/);
    expect(q('input[name="name"]').getAttribute('aria-invalid')).toBe('true');
  });

  it('hides the fields a kind does not use and leaves them out of the request', async () => {
    const { form, calls } = setup([{ name: 'python', ok: true, detail: '3.11' }]);
    form.fill({ ...CLUSTER, kind: 'local', name: 'laptop' });
    const host = form.node.querySelector('input[name="host"]')!.closest('.cs-field') as HTMLElement;
    expect(host.hidden).toBe(true);
    await form.test();
    expect(calls[0].body).toEqual({ kind: 'local', name: 'laptop' });
  });

  it('tests the connection, shows each check, then saves', async () => {
    const checks = [
      { name: 'ssh', ok: true, required: true, detail: 'connected as csuser' },
      { name: 'slurm', ok: true, required: true, detail: 'partitions debug, short' },
      { name: 'modules', ok: false, required: false, detail: 'no Lmod' }
    ];
    const { form, calls, savedNames, q } = setup(checks);
    form.fill(CLUSTER);
    const save = q('button.cs-save') as HTMLButtonElement;
    expect(save.disabled).toBe(true);
    await form.test();
    expect(calls[0].path).toBe('compute?check_only=1');
    expect(calls[0].body).toMatchObject({ name: 'testcluster', kind: 'slurm', port: 2222, key_file: '/keys/csuser' });
    const items = [...form.node.querySelectorAll<HTMLElement>('.cs-check')];
    expect(items.map(i => i.dataset.check)).toEqual(['ssh', 'slurm', 'modules']);
    expect(items[2].classList.contains('cs-check-failed')).toBe(true);
    expect(items[2].textContent).toContain('(optional)');
    expect(save.disabled).toBe(false);
    await form.save();
    expect(calls[1].path).toBe('compute');
    expect(savedNames).toEqual(['testcluster']);
    expect(q('.cs-ResourceForm-status').textContent).toContain("'testcluster' is registered");
  });

  it('refuses to save after a failed check or an edit since the test', async () => {
    const { form, calls, q } = setup([{ name: 'ssh', ok: false, required: true, detail: 'host key not trusted' }]);
    form.fill(CLUSTER);
    await form.test();
    expect((q('button.cs-save') as HTMLButtonElement).disabled).toBe(true);
    expect(q('.cs-check-failed').textContent).toContain('host key not trusted');
    expect(await form.save()).toBeUndefined();
    expect(calls).toHaveLength(1);
  });

  it("shows the server's error message", async () => {
    const { api } = fakeApi({ 'POST compute': () => ({ status: 409, body: { error: "a compute resource named 'x' already exists" } }) });
    const form = new ResourceForm(api);
    form.fill({ ...CLUSTER, name: 'x' });
    await form.test();
    await flush();
    expect(form.node.querySelector('.cs-ResourceForm-status')!.textContent).toContain('already exists');
  });
});

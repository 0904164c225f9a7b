import { SpecForm } from '../specForm';

const SPEC = [
  { name: 'steps', type: 'int', default: 10, min: 1, max: 100, help: 'number of steps' },
  { name: 'rate', type: 'float', default: 0.5 },
  { name: 'label', type: 'str', required: true },
  { name: 'method', type: 'str', choices: ['fast', 'exact'], default: 'exact' },
  { name: 'verbose', type: 'bool', default: false }
];

function set(form: SpecForm, name: string, value: string | boolean) {
  const control = form.node.querySelector(`[name="${name}"]`) as HTMLInputElement;
  if (typeof value === 'boolean') control.checked = value;
  else control.value = value;
}

describe('SpecForm', () => {
  it('generates one control per parameter with defaults and help', () => {
    const form = new SpecForm(SPEC);
    expect(form.node.querySelectorAll('.cs-field')).toHaveLength(5);
    expect((form.node.querySelector('[name="steps"]') as HTMLInputElement).type).toBe('number');
    expect((form.node.querySelector('[name="steps"]') as HTMLInputElement).value).toBe('10');
    expect(form.node.querySelector('[name="method"]')!.tagName).toBe('SELECT');
    expect((form.node.querySelector('[name="verbose"]') as HTMLInputElement).type).toBe('checkbox');
    expect(form.node.textContent).toContain('number of steps');
  });

  it('returns typed values', () => {
    const form = new SpecForm(SPEC);
    set(form, 'label', 'run-1');
    set(form, 'rate', '0.25');
    set(form, 'verbose', true);
    expect(form.read()).toEqual({ ok: true, values: { steps: 10, rate: 0.25, label: 'run-1', method: 'exact', verbose: true } });
  });

  it('reports every problem: range, whole numbers, required', () => {
    const form = new SpecForm(SPEC);
    set(form, 'steps', '2.5');
    const result = form.read();
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.problems).toEqual(['steps must be a whole number', 'label is required']);
    }
    set(form, 'steps', '500');
    const again = form.read();
    expect(!again.ok && again.problems[0]).toBe('steps must be at most 100');
  });
});

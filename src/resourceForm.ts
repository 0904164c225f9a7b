/**
 * The web form that registers a compute resource. Every field is checked as
 * the user types; "Test connection" asks the server to run the registration
 * checks without saving (POST /compute?check_only=1) and lists each check's
 * result; "Save" registers the resource, which the server checks again.
 */
import { Api, ApiError } from './api';
import { checkHost, checkName, checkPath, checkPort } from './validate';

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
  required?: boolean;
}

export interface RegisterResult {
  checks?: Check[];
  saved?: boolean;
  ok?: boolean;
}

interface FieldSpec {
  key: string;
  label: string;
  placeholder?: string;
  kinds: string[];
  check?: (value: string) => string;
  help?: string;
}

const REMOTE = ['ssh', 'slurm'];
const FIELDS: FieldSpec[] = [
  { key: 'name', label: 'Name', placeholder: 'mycluster', kinds: ['local', ...REMOTE], check: v => checkName(v, 'name') },
  { key: 'host', label: 'Host', placeholder: 'login.cluster.edu', kinds: REMOTE, check: checkHost },
  { key: 'port', label: 'Port', placeholder: '22', kinds: REMOTE, check: checkPort },
  { key: 'user', label: 'User', placeholder: 'your login name', kinds: REMOTE, check: v => (v ? checkName(v, 'user') : '') },
  { key: 'key_file', label: 'Private key file', placeholder: '~/.ssh/id_ed25519', kinds: REMOTE, check: v => checkPath(v, 'key file') },
  { key: 'known_hosts', label: 'known_hosts file', placeholder: '~/.ssh/known_hosts', kinds: REMOTE, check: v => checkPath(v, 'known_hosts') },
  { key: 'partition', label: 'Partition', placeholder: 'default partition', kinds: ['slurm'], check: v => (v ? checkName(v, 'partition') : '') },
  { key: 'account', label: 'Account', placeholder: 'allocation account', kinds: ['slurm'], check: v => (v ? checkName(v, 'account') : '') }
];

export class ResourceForm {
  readonly node: HTMLFormElement;
  private readonly inputs = new Map<string, HTMLInputElement>();
  private readonly errors = new Map<string, HTMLElement>();
  private readonly kind: HTMLSelectElement;
  private readonly checksList: HTMLElement;
  private readonly status: HTMLElement;
  private readonly testButton: HTMLButtonElement;
  private readonly saveButton: HTMLButtonElement;
  /** The field values the last passing test ran with; Save needs them unchanged. */
  private testedWith = '';

  constructor(
    private readonly api: Api,
    private readonly onSaved: (name: string) => void = () => undefined
  ) {
    const form = document.createElement('form');
    form.className = 'cs-ResourceForm';
    form.noValidate = true;
    form.setAttribute('aria-label', 'Register a compute resource');
    form.innerHTML = '<h2>Register a compute resource</h2>';
    this.node = form;

    this.kind = document.createElement('select');
    this.kind.name = 'kind';
    for (const kind of ['slurm', 'ssh', 'local']) {
      const option = document.createElement('option');
      option.value = kind;
      option.textContent = kind;
      this.kind.appendChild(option);
    }
    form.appendChild(this.labelled('kind', 'Kind', this.kind));

    for (const spec of FIELDS) {
      const input = document.createElement('input');
      input.name = spec.key;
      input.type = 'text';
      input.placeholder = spec.placeholder ?? '';
      input.autocomplete = 'off';
      input.spellcheck = false;
      if (spec.key === 'port') {
        input.value = '22';
        input.inputMode = 'numeric';
      }
      input.addEventListener('input', () => this.onChange(spec.key));
      this.inputs.set(spec.key, input);
      form.appendChild(this.labelled(spec.key, spec.label, input));
    }
    this.kind.addEventListener('change', () => this.onChange('kind'));

    const buttons = document.createElement('div');
    buttons.className = 'cs-ResourceForm-buttons';
    this.testButton = this.button('Test connection', 'cs-test', () => void this.test());
    this.saveButton = this.button('Save', 'cs-save', () => void this.save());
    this.saveButton.disabled = true;
    buttons.append(this.testButton, this.saveButton);
    form.appendChild(buttons);

    this.status = document.createElement('div');
    this.status.className = 'cs-ResourceForm-status';
    this.status.setAttribute('role', 'status');
    this.checksList = document.createElement('ul');
    this.checksList.className = 'cs-ResourceForm-checks';
    form.append(this.status, this.checksList);
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.test();
    });
    this.showFieldsForKind();
  }

  /** Sets field values (tests, and "edit" from the list). */
  fill(values: Record<string, string>): void {
    for (const [key, value] of Object.entries(values)) {
      if (key === 'kind') {
        this.kind.value = value;
      } else {
        const input = this.inputs.get(key);
        if (input) {
          input.value = value;
        }
      }
    }
    this.onChange('kind');
  }

  /** The request body: only the fields of the chosen kind, port as a number. */
  values(): Record<string, string | number> {
    const kind = this.kind.value;
    const body: Record<string, string | number> = { kind };
    for (const spec of FIELDS) {
      const value = this.inputs.get(spec.key)!.value.trim();
      if (spec.kinds.includes(kind) && value !== '') {
        body[spec.key] = spec.key === 'port' ? Number(value) : value;
      }
    }
    return body;
  }

  /** Checks every visible field, shows the messages, and says whether all passed. */
  validate(): boolean {
    let ok = true;
    for (const spec of FIELDS) {
      const active = spec.kinds.includes(this.kind.value);
      const message = active && spec.check ? spec.check(this.inputs.get(spec.key)!.value.trim()) : '';
      this.errors.get(spec.key)!.textContent = message;
      this.inputs.get(spec.key)!.setAttribute('aria-invalid', message ? 'true' : 'false');
      ok = ok && !message;
    }
    return ok;
  }

  async test(): Promise<RegisterResult | undefined> {
    if (!this.validate()) {
      this.setStatus('Fix the fields marked in red first.', 'error');
      return undefined;
    }
    const body = this.values();
    this.setStatus('Testing the connection…', 'busy');
    this.testButton.disabled = true;
    try {
      const result = await this.api.post<RegisterResult>('compute', body, { check_only: 1 });
      const passed = this.showChecks(result.checks ?? []);
      this.testedWith = passed ? JSON.stringify(body) : '';
      this.saveButton.disabled = !passed;
      this.setStatus(passed ? 'All required checks passed: you can save.' : 'Some checks failed: see below.', passed ? 'ok' : 'error');
      return result;
    } catch (error) {
      this.fail(error);
      return undefined;
    } finally {
      this.testButton.disabled = false;
    }
  }

  async save(): Promise<RegisterResult | undefined> {
    const body = this.values();
    if (!this.validate() || JSON.stringify(body) !== this.testedWith) {
      this.saveButton.disabled = true;
      this.setStatus('Test the connection with these settings before saving.', 'error');
      return undefined;
    }
    this.setStatus('Saving…', 'busy');
    this.saveButton.disabled = true;
    try {
      const result = await this.api.post<RegisterResult>('compute', body);
      this.showChecks(result.checks ?? []);
      if (result.saved) {
        this.setStatus(`Saved: resource '${body.name}' is registered.`, 'ok');
        this.onSaved(String(body.name));
      } else {
        this.setStatus('Not saved: a required check failed (see below).', 'error');
      }
      return result;
    } catch (error) {
      this.fail(error);
      return undefined;
    }
  }

  private showChecks(checks: Check[]): boolean {
    this.checksList.textContent = '';
    for (const check of checks) {
      const item = document.createElement('li');
      item.className = check.ok ? 'cs-check cs-check-ok' : 'cs-check cs-check-failed';
      item.dataset.check = check.name;
      const mark = document.createElement('span');
      mark.className = 'cs-check-mark';
      mark.textContent = check.ok ? '✔' : '✘';
      const name = document.createElement('span');
      name.className = 'cs-check-name';
      name.textContent = check.name + (check.required === false ? ' (optional)' : '');
      const detail = document.createElement('span');
      detail.className = 'cs-check-detail';
      detail.textContent = check.detail ?? '';
      item.append(mark, name, detail);
      this.checksList.appendChild(item);
    }
    return checks.length > 0 && checks.every(c => c.ok || c.required === false);
  }

  private fail(error: unknown): void {
    this.setStatus(error instanceof ApiError ? error.message : `Request failed: ${String(error)}`, 'error');
  }

  private onChange(key: string): void {
    if (key === 'kind') {
      this.showFieldsForKind();
    }
    // Any edit invalidates the last test: Save needs a fresh one.
    if (JSON.stringify(this.values()) !== this.testedWith) {
      this.saveButton.disabled = true;
    }
    const spec = FIELDS.find(f => f.key === key);
    if (spec?.check) {
      const message = spec.check(this.inputs.get(key)!.value.trim());
      this.errors.get(key)!.textContent = message;
      this.inputs.get(key)!.setAttribute('aria-invalid', message ? 'true' : 'false');
    }
  }

  private showFieldsForKind(): void {
    for (const spec of FIELDS) {
      const row = this.inputs.get(spec.key)!.closest('.cs-field') as HTMLElement;
      row.hidden = !spec.kinds.includes(this.kind.value);
    }
  }

  private setStatus(text: string, state: 'ok' | 'error' | 'busy'): void {
    this.status.textContent = text;
    this.status.dataset.state = state;
  }

  private labelled(key: string, text: string, control: HTMLElement): HTMLElement {
    const row = document.createElement('div');
    row.className = 'cs-field';
    const label = document.createElement('label');
    const id = `cs-resource-${key}`;
    control.id = id;
    label.htmlFor = id;
    label.textContent = text;
    const error = document.createElement('div');
    error.className = 'cs-field-error';
    error.setAttribute('aria-live', 'polite');
    this.errors.set(key, error);
    row.append(label, control, error);
    return row;
  }

  private button(text: string, cls: string, onClick: () => void): HTMLButtonElement {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `jp-mod-styled cs-button ${cls}`;
    button.textContent = text;
    button.addEventListener('click', onClick);
    return button;
  }
}

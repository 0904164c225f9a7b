/**
 * A form generated from a template's input spec (a list of parameters with
 * name, type, default, help, min, max, choices, required). `read()` returns
 * typed values, or the list of problems to show the user.
 */

export interface Param {
  name: string;
  type?: string;
  default?: unknown;
  help?: string;
  min?: number;
  max?: number;
  choices?: unknown[];
  required?: boolean;
}

export type ReadResult = { ok: true; values: Record<string, unknown> } | { ok: false; problems: string[] };

const NUMBER_TYPES = ['int', 'integer', 'float', 'number'];
const BOOL_TYPES = ['bool', 'boolean'];

export class SpecForm {
  readonly node: HTMLElement;
  private readonly controls = new Map<string, HTMLInputElement | HTMLSelectElement>();

  constructor(readonly params: Param[]) {
    this.node = document.createElement('div');
    this.node.className = 'cs-SpecForm';
    for (const param of params) {
      this.node.appendChild(this.field(param));
    }
  }

  read(): ReadResult {
    const values: Record<string, unknown> = {};
    const problems: string[] = [];
    for (const param of this.params) {
      const control = this.controls.get(param.name)!;
      const type = (param.type ?? 'str').toLowerCase();
      const raw = control instanceof HTMLInputElement && control.type === 'checkbox' ? control.checked : control.value.trim();
      const problem = this.check(param, type, raw);
      control.setAttribute('aria-invalid', problem ? 'true' : 'false');
      if (problem) {
        problems.push(problem);
        continue;
      }
      if (raw === '') {
        continue; // optional and empty: the template's default applies
      }
      if (BOOL_TYPES.includes(type)) {
        values[param.name] = raw;
      } else if (NUMBER_TYPES.includes(type)) {
        values[param.name] = Number(raw);
      } else if (param.choices?.length) {
        // A choice keeps the type of the spec's own value.
        values[param.name] = param.choices.find(c => String(c) === raw);
      } else {
        values[param.name] = raw;
      }
    }
    return problems.length ? { ok: false, problems } : { ok: true, values };
  }

  private check(param: Param, type: string, raw: string | boolean): string {
    if (typeof raw === 'boolean') {
      return '';
    }
    if (raw === '') {
      return param.required && param.default === undefined ? `${param.name} is required` : '';
    }
    if (NUMBER_TYPES.includes(type)) {
      const value = Number(raw);
      if (!Number.isFinite(value)) {
        return `${param.name} must be a number`;
      }
      if ((type === 'int' || type === 'integer') && !Number.isInteger(value)) {
        return `${param.name} must be a whole number`;
      }
      if (param.min !== undefined && param.min !== null && value < param.min) {
        return `${param.name} must be at least ${param.min}`;
      }
      if (param.max !== undefined && param.max !== null && value > param.max) {
        return `${param.name} must be at most ${param.max}`;
      }
    }
    if (param.choices?.length && !param.choices.some(c => String(c) === raw)) {
      return `${param.name} must be one of ${param.choices.join(', ')}`;
    }
    return '';
  }

  private field(param: Param): HTMLElement {
    const type = (param.type ?? 'str').toLowerCase();
    const row = document.createElement('div');
    row.className = 'cs-field';
    const label = document.createElement('label');
    const id = `cs-param-${param.name}`;
    label.htmlFor = id;
    label.textContent = param.name + (param.required ? ' *' : '');
    let control: HTMLInputElement | HTMLSelectElement;
    if (param.choices?.length) {
      control = document.createElement('select');
      for (const choice of param.choices) {
        const option = document.createElement('option');
        option.value = option.textContent = String(choice);
        control.appendChild(option);
      }
      if (param.default !== undefined && param.default !== null) {
        control.value = String(param.default);
      }
    } else {
      const input = document.createElement('input');
      if (BOOL_TYPES.includes(type)) {
        input.type = 'checkbox';
        input.checked = param.default === true || param.default === 'true';
      } else {
        input.type = NUMBER_TYPES.includes(type) ? 'number' : 'text';
        if (NUMBER_TYPES.includes(type)) {
          input.step = type.startsWith('int') ? '1' : 'any';
          if (param.min !== undefined && param.min !== null) input.min = String(param.min);
          if (param.max !== undefined && param.max !== null) input.max = String(param.max);
        }
        input.value = param.default === undefined || param.default === null ? '' : String(param.default);
      }
      control = input;
    }
    control.id = id;
    control.name = param.name;
    this.controls.set(param.name, control);
    row.append(label, control);
    if (param.help) {
      const help = document.createElement('div');
      help.className = 'cs-field-help';
      help.textContent = param.help;
      row.appendChild(help);
    }
    return row;
  }
}

// Dialog bodies: the parameters form of a run, and the template picker.
import { Dialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ITemplate, ParamValue, Params } from './types';

/**
 * The run form, prefilled from the pipeline's `[params]`. Only the values the user changed are
 * sent: a masked secret left as it is must not override the real one.
 */
export class ParamsForm extends ReactWidget implements Dialog.IBodyWidget<Params> {
  constructor(private readonly defaults: Params) {
    super();
    this.addClass('bb-ParamsForm');
  }

  getValue(): Params {
    return this._changed;
  }

  render(): JSX.Element {
    const names = Object.keys(this.defaults);
    if (names.length === 0) {
      return <p>This pipeline has no parameters ([params] in its pipeline.toml).</p>;
    }
    return (
      <form onSubmit={event => event.preventDefault()}>
        {names.map(name => (
          <ParamField
            key={name}
            name={name}
            value={this._changed[name] ?? this.defaults[name]}
            onChange={value => {
              if (value === this.defaults[name]) {
                delete this._changed[name];
              } else {
                this._changed[name] = value;
              }
              this.update();
            }}
          />
        ))}
      </form>
    );
  }

  private _changed: Params = {};
}

function ParamField(props: {
  name: string;
  value: ParamValue;
  onChange: (value: ParamValue) => void;
}): JSX.Element {
  const { name, value } = props;
  const id = `bb-param-${name}`;
  let input: JSX.Element;
  if (typeof value === 'boolean') {
    input = (
      <input id={id} name={`param:${name}`} type="checkbox" checked={value} onChange={e => props.onChange(e.target.checked)} />
    );
  } else if (typeof value === 'number') {
    input = (
      <input
        id={id}
        className="jp-mod-styled"
        name={`param:${name}`}
        type="number"
        value={value}
        onChange={e => props.onChange(e.target.value === '' ? '' : Number(e.target.value))}
      />
    );
  } else {
    input = (
      <input id={id} className="jp-mod-styled" name={`param:${name}`} type="text" value={value} onChange={e => props.onChange(e.target.value)} />
    );
  }
  return (
    <div className="bb-ParamsForm-field">
      <label htmlFor={id}>{name}</label>
      {input}
    </div>
  );
}

/** A list of templates; the dialog's value is the chosen one. */
export class TemplatePicker extends ReactWidget implements Dialog.IBodyWidget<ITemplate | null> {
  constructor(private readonly templates: ReadonlyArray<ITemplate>) {
    super();
    this.addClass('bb-TemplatePicker');
    this._chosen = templates[0] ?? null;
  }

  getValue(): ITemplate | null {
    return this._chosen;
  }

  render(): JSX.Element {
    return (
      <div role="listbox">
        {this.templates.map(template => (
          <label key={template.key} className="bb-TemplatePicker-item" data-template={template.key}>
            <input
              type="radio"
              name="template"
              value={template.key}
              checked={this._chosen?.key === template.key}
              onChange={() => {
                this._chosen = template;
                this.update();
              }}
            />
            <strong>{template.key}</strong> {template.description}
          </label>
        ))}
      </div>
    );
  }

  private _chosen: ITemplate | null;
}

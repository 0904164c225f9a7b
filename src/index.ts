/**
 * The JupyterLab plugin: one left-panel entry (the Cybershuttle sidebar),
 * restored across reloads, configured by schema/plugin.json, and a main-area
 * form to register a compute resource.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { API_PREFIX, Api } from './api';
import { ResourceForm } from './resourceForm';
import { Sidebar } from './sidebar';

const PLUGIN_ID = 'jupyterlab-cybershuttle:plugin';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
  'd="M12 2 3 7v10l9 5 9-5V7l-9-5zm0 2.3 6.5 3.6L12 11.5 5.5 7.9 12 4.3zM5 9.6l6 3.3v6.6l-6-3.3V9.6zm8 9.9v-6.6l6-3.3v6.6l-6 3.3z"/></svg>';

export const cybershuttleIcon = new LabIcon({ name: 'cybershuttle:logo', svgstr: ICON_SVG });

export namespace CommandIDs {
  export const open = 'cybershuttle:open';
  export const register = 'cybershuttle:register-resource';
  export const refresh = 'cybershuttle:refresh';
}

/** A `send` for Api that goes through JupyterLab's authenticated connection. */
function jupyterSend(settings: ServerConnection.ISettings) {
  return (path: string, init: RequestInit = {}) =>
    ServerConnection.makeRequest(URLExt.join(settings.baseUrl, API_PREFIX, path), init, settings);
}

/**
 * The event stream; the token rides in the URL because EventSource cannot set headers. So does the
 * XSRF token: under JupyterHub a cookie-authenticated request that is not a page load (an
 * EventSource's) is refused without it, and the hub ignores tokens in URLs.
 */
function openEvents(settings: ServerConnection.ISettings): EventSource | undefined {
  if (typeof EventSource === 'undefined') {
    return undefined;
  }
  const params = new URLSearchParams();
  const token = settings.token || PageConfig.getToken();
  if (token) {
    params.set('token', token);
  }
  const xsrf = typeof document === 'undefined' ? undefined : /(?:^|;\s*)_xsrf=([^;]*)/.exec(document.cookie)?.[1];
  if (xsrf) {
    params.set('_xsrf', decodeURIComponent(xsrf));
  }
  const query = params.toString();
  return new EventSource(URLExt.join(settings.baseUrl, API_PREFIX, 'events') + (query ? `?${query}` : ''), { withCredentials: true });
}

/** The left-panel widget; tells the plugin when it is first shown. */
class SidebarPanel extends Widget {
  constructor(private readonly shown: () => void) {
    super();
  }
  protected onAfterShow(): void {
    this.shown();
  }
  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.shown();
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Cybershuttle sidebar: storage, datasets, compute, sessions, templates, applications and models.',
  autoStart: true,
  optional: [ILayoutRestorer, ISettingRegistry, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ) => {
    const serverSettings = ServerConnection.makeSettings();
    const api = new Api(jupyterSend(serverSettings));
    let formWidget: MainAreaWidget<Widget> | undefined;
    let sidebar: Sidebar | undefined;
    const panel = new SidebarPanel(() => onShow());
    panel.id = 'cybershuttle-sidebar';
    panel.title.icon = cybershuttleIcon;
    panel.title.caption = 'Cybershuttle';
    panel.addClass('cs-Panel');

    const openRegisterForm = () => {
      if (!formWidget || formWidget.isDisposed) {
        const form = new ResourceForm(api, () => {
          // The new resource appears in Compute and in the Applications chooser.
          void sidebar?.list('compute')?.load();
          void sidebar?.list('applications')?.load();
        });
        const content = new Widget({ node: form.node });
        content.addClass('cs-FormWidget');
        formWidget = new MainAreaWidget({ content });
        formWidget.id = 'cybershuttle-register-resource';
        formWidget.title.label = 'Register compute resource';
        formWidget.title.icon = cybershuttleIcon;
        formWidget.title.closable = true;
      }
      if (!formWidget.isAttached) {
        app.shell.add(formWidget, 'main');
      }
      app.shell.activateById(formWidget.id);
    };

    const build = (settings: ISettingRegistry.ISettings | null) => {
      const value = (key: string, fallback: any) => (settings?.get(key).composite ?? fallback) as any;
      sidebar?.dispose();
      panel.node.textContent = '';
      sidebar = new Sidebar({
        api,
        openRegisterForm,
        openEvents: value('liveUpdates', true) ? () => openEvents(serverSettings) : undefined,
        pageSize: value('pageSize', 200),
        searchDelay: value('searchDelay', 200),
        visibleRows: value('visibleRows', 12),
        sections: value('sections', undefined)
      });
      panel.node.appendChild(sidebar.node);
      if (panel.isVisible) {
        onShow();
      }
    };

    // Load lazily: nothing is fetched until the panel is first shown.
    let shown = false;
    function onShow(): void {
      if (sidebar && !shown) {
        shown = true;
        sidebar.connect();
        void sidebar.refresh();
      }
    }

    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'cybershuttle-sidebar');

    if (settingRegistry) {
      settingRegistry.load(PLUGIN_ID).then(
        settings => {
          build(settings);
          settings.changed.connect(() => {
            shown = false;
            build(settings);
          });
        },
        () => build(null)
      );
    } else {
      build(null);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open Cybershuttle sidebar',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.register, {
      label: 'Register a compute resource',
      execute: openRegisterForm
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Cybershuttle sidebar',
      execute: () => sidebar?.refresh()
    });
    for (const command of [CommandIDs.open, CommandIDs.register, CommandIDs.refresh]) {
      palette?.addItem({ command, category: 'Cybershuttle' });
    }
  }
};

export default plugin;

/// The dashboard's Mustache templates, CSS and JavaScript. Kept in the
/// binary (no build step, no CDN): the pages work with no internet.
enum DashboardTemplates {
    static let layout = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{{title}} · MassageFleet</title>
    <link rel="stylesheet" href="/static/app.css">
    <script src="/static/app.js" defer></script>
    </head>
    <body data-page="{{page}}">
    {{#signedIn}}
    <header>
      <nav aria-label="Main">
        <a href="/" class="brand">MassageFleet</a>
        <a href="/"{{#isOverview}} aria-current="page"{{/isOverview}}>Overview</a>
        <a href="/devices"{{#isDevices}} aria-current="page"{{/isDevices}}>Devices</a>
        <a href="/alerts"{{#isAlerts}} aria-current="page"{{/isAlerts}}>Alerts</a>
        <a href="/usage"{{#isUsage}} aria-current="page"{{/isUsage}}>Usage</a>
        <a href="/rollouts"{{#isRollouts}} aria-current="page"{{/isRollouts}}>Rollouts</a>
        <span id="whoami">{{whoami}} ({{role}})</span>
        <form id="logout" method="post" action="/logout">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <button type="submit">Sign out</button>
        </form>
      </nav>
    </header>
    {{/signedIn}}
    <main>
    {{#flash}}<p id="flash" role="status">{{flash}}</p>{{/flash}}
    {{{body}}}
    </main>
    </body>
    </html>
    """

    static let login = """
    <h1>Sign in</h1>
    {{#error}}<p id="login-error" role="alert">{{error}}</p>{{/error}}
    <form id="login" method="post" action="/login">
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required>
      <button type="submit">Sign in</button>
    </form>
    """

    static let overview = """
    <h1>Fleet overview</h1>
    <div class="sites">
    {{#sites}}
    <section class="site" data-site="{{site}}" aria-labelledby="site-{{site}}">
      <h2 id="site-{{site}}">{{name}} <small>{{timezone}}</small></h2>
      <dl class="counts">
        <div><dt>Devices</dt><dd data-count="devices">{{devices}}</dd></div>
        <div><dt>Online</dt><dd data-count="online">{{online}}</dd></div>
        <div><dt>In session</dt><dd data-count="in_session">{{in_session}}</dd></div>
        <div><dt>Idle</dt><dd data-count="idle">{{idle}}</dd></div>
        <div><dt>Offline</dt><dd data-count="offline">{{offline}}</dd></div>
        <div><dt>Faulted</dt><dd data-count="faulted">{{faulted}}</dd></div>
        <div><dt>Active alerts</dt><dd data-count="alerts">{{active_alerts}}</dd></div>
        <div><dt>Sessions today</dt><dd data-count="sessions_today">{{sessions_today}}</dd></div>
        <div><dt>Utilisation</dt><dd data-count="utilisation">{{utilisationText}}</dd></div>
      </dl>
      {{#canOperate}}
      <form class="start-site" method="post" action="/ui/sites/{{site}}/start">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="program-{{site}}">Program</label>
        <select id="program-{{site}}" name="program">{{#programs}}<option value="{{.}}">{{.}}</option>{{/programs}}</select>
        <button type="submit">Start on idle devices</button>
      </form>
      {{/canOperate}}
    </section>
    {{/sites}}
    </div>
    """

    static let devices = """
    <h1>Devices</h1>
    <div class="filters">
      <label for="filter-site">Site</label>
      <select id="filter-site"><option value="">all</option>{{#siteIDs}}<option value="{{.}}">{{.}}</option>{{/siteIDs}}</select>
      <label for="filter-state">State</label>
      <select id="filter-state"><option value="">all</option><option>in_session</option><option>idle</option><option>offline</option><option>faulted</option><option>revoked</option></select>
      <label for="filter-text">Search</label>
      <input id="filter-text" type="search" placeholder="device or program">
    </div>
    <table id="devices">
      <thead><tr>
        <th><button type="button" data-sort="site">Site</button></th>
        <th><button type="button" data-sort="device">Device</button></th>
        <th><button type="button" data-sort="state">State</button></th>
        <th><button type="button" data-sort="health">Health</button></th>
        <th><button type="button" data-sort="program">Program</button></th>
        <th><button type="button" data-sort="config">Config</button></th>
      </tr></thead>
      <tbody>
      {{#devices}}
      <tr data-device="{{site}}/{{device}}" data-site="{{site}}" data-state="{{state}}">
        <td data-col="site">{{site}}</td>
        <td data-col="device"><a href="/devices/{{site}}/{{device}}">{{device}}</a></td>
        <td data-col="state"><span class="state {{state}}">{{state}}</span></td>
        <td data-col="health"><span class="health {{health}}">{{health}}</span></td>
        <td data-col="program">{{program}}</td>
        <td data-col="config">{{config}}</td>
      </tr>
      {{/devices}}
      </tbody>
    </table>
    """

    static let device = """
    <h1>{{site}}/{{device}}</h1>
    <p>State <strong class="state {{state}}">{{state}}</strong>, health <strong class="health {{health}}">{{health}}</strong>, agent {{agentVersion}}, epoch {{epoch}}.</p>
    <section aria-labelledby="live-h" class="live" data-events="/events/devices/{{site}}/{{device}}">
      <h2 id="live-h">Live</h2>
      <dl class="telemetry">
        <div><dt>Session</dt><dd data-live="state">{{live.state}}</dd></div>
        <div><dt>Step</dt><dd data-live="step">{{live.step}}</dd></div>
        <div><dt>Zone or point</dt><dd data-live="target">{{live.target}}</dd></div>
        <div><dt>Technique</dt><dd data-live="technique">{{live.technique}}</dd></div>
        <div><dt>Intensity</dt><dd data-live="intensity">{{live.intensity}}</dd></div>
        <div><dt>Pressure</dt><dd data-live="pressure">{{live.pressure}}</dd></div>
        <div><dt>Motor</dt><dd data-live="motor_temp">{{live.motor_temp}}</dd></div>
        <div><dt>Breathing cue</dt><dd data-live="breathing">{{live.breathing}}</dd></div>
        <div><dt>Faults</dt><dd data-live="faults">{{live.faults}}</dd></div>
        <div><dt>Pain lockout</dt><dd data-live="lockout">{{live.lockout}}</dd></div>
        <div><dt>Updated</dt><dd data-live="updated">{{live.updated}}</dd></div>
      </dl>
    </section>
    {{#canOperate}}
    <section aria-labelledby="act-h">
      <h2 id="act-h">Act</h2>
      <form id="start" method="post" action="/ui/devices/{{site}}/{{device}}/start">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="program">Program</label>
        <select id="program" name="program">{{#programs}}<option value="{{.}}">{{.}}</option>{{/programs}}</select>
        <button type="submit">Start session</button>
      </form>
      <form id="stop" method="post" action="/ui/devices/{{site}}/{{device}}/stop">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit">Stop session</button>
      </form>
      <form id="clear-fault" method="post" action="/ui/devices/{{site}}/{{device}}/clear-fault">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit" title="Acknowledge the latched faults once someone has looked at the massager; only faults that read healthy again are cleared">Acknowledge faults</button>
      </form>
    </section>
    {{/canOperate}}
    <section aria-labelledby="sessions-h">
      <h2 id="sessions-h">Recent sessions</h2>
      <table id="sessions"><thead><tr><th>Session</th><th>Program</th><th>Started</th><th>Outcome</th><th>Reason</th></tr></thead>
      <tbody>{{#sessions}}<tr><td>{{session_id}}</td><td>{{program}}</td><td>{{started}}</td><td>{{outcome}}</td><td>{{reason}}</td></tr>{{/sessions}}</tbody></table>
    </section>
    <section aria-labelledby="alerts-h">
      <h2 id="alerts-h">Alerts</h2>
      <ul>{{#alerts}}<li class="health {{severity}}">{{type}}: {{message}} ({{raised}}{{#cleared}}, cleared {{cleared}}{{/cleared}})</li>{{/alerts}}{{^alerts}}<li>none</li>{{/alerts}}</ul>
    </section>
    <section aria-labelledby="config-h">
      <h2 id="config-h">Configuration</h2>
      <dl id="config"><div><dt>Desired</dt><dd>{{desired}}</dd></div><div><dt>Reported</dt><dd>{{reported}}</dd></div></dl>
    </section>
    """

    static let alerts = """
    <h1>Alerts</h1>
    <table id="alerts"><thead><tr><th>Severity</th><th>Site</th><th>Device</th><th>Type</th><th>Message</th><th>Raised</th><th>Acknowledged</th><th></th></tr></thead>
    <tbody>
    {{#alerts}}
    <tr data-alert="{{id}}"><td class="health {{severity}}">{{severity}}</td><td>{{site}}</td><td>{{device}}</td><td>{{type}}</td><td>{{message}}</td><td>{{raised}}</td><td>{{acknowledged}}</td>
    <td>{{#canAck}}<form method="post" action="/ui/alerts/{{id}}/ack"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Acknowledge</button></form>{{/canAck}}</td></tr>
    {{/alerts}}
    {{^alerts}}<tr><td colspan="8">No active alerts.</td></tr>{{/alerts}}
    </tbody></table>
    """

    static let usage = """
    <h1>Usage</h1>
    {{#sites}}
    <section class="usage" data-site="{{site}}"><h2>{{site}}</h2>
    <p>Sessions: {{started}} started, {{completed}} completed, {{aborted}} aborted.</p>
    <div class="charts">{{{charts}}}</div>
    </section>
    {{/sites}}
    {{^sites}}<p>No usage reported yet.</p>{{/sites}}
    """

    static let rollouts = """
    <h1>Rollouts</h1>
    {{#rollouts}}
    <section class="rollout" data-rollout="{{id}}"><h2>{{name}} <small>{{id}}</small></h2>
    <p>State <strong>{{state}}</strong>{{#reason}} ({{reason}}){{/reason}}; waves: {{waves}}; devices: {{counts}}.</p>
    {{#partial}}<p class="partial">Only your sites' devices are shown; this rollout also runs elsewhere, so only an admin of every site it spans can pause, resume or abort it.</p>{{/partial}}
    {{#canAdmin}}
    <form method="post" action="/ui/rollouts/{{id}}/pause"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Pause</button></form>
    <form method="post" action="/ui/rollouts/{{id}}/resume"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Resume</button></form>
    <form method="post" action="/ui/rollouts/{{id}}/abort"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Abort</button></form>
    {{/canAdmin}}
    <table><thead><tr><th>Wave</th><th>Device</th><th>State</th><th>Version</th><th>Error</th></tr></thead>
    <tbody>{{#devices}}<tr><td>{{wave}}</td><td>{{site}}/{{device}}</td><td>{{state}}</td><td>{{version}}</td><td>{{error}}</td></tr>{{/devices}}</tbody></table>
    </section>
    {{/rollouts}}
    {{^rollouts}}<p>No rollouts yet.</p>{{/rollouts}}
    """

    static let css = """
    :root { --fg: #1b1f24; --muted: #57606a; --bg: #ffffff; --line: #d0d7de; --ok: #116329; --warn: #7d4e00; --crit: #a40e26; --accent: #0a58ca; }
    * { box-sizing: border-box; }
    body { margin: 0; font: 16px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
    header nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; padding: .6rem 1rem; border-bottom: 1px solid var(--line); }
    nav a { color: var(--accent); text-decoration: none; padding: .2rem 0; }
    nav a[aria-current] { font-weight: 700; text-decoration: underline; }
    nav .brand { font-weight: 700; color: var(--fg); }
    #whoami { margin-left: auto; color: var(--muted); }
    main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
    .sites { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
    .site, section.rollout, section.usage { border: 1px solid var(--line); border-radius: 8px; padding: 1rem; }
    .counts { display: grid; grid-template-columns: repeat(3, 1fr); gap: .5rem; margin: 0 0 1rem; }
    .counts div { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; }
    dt { color: var(--muted); font-size: .85rem; }
    dd { margin: 0; font-size: 1.3rem; font-weight: 600; }
    .telemetry { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .5rem; }
    table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
    th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
    th button { all: unset; cursor: pointer; font-weight: 700; color: var(--accent); }
    th button:focus-visible, button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
    button { font: inherit; padding: .35rem .8rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 6px; cursor: pointer; }
    form { display: inline-flex; gap: .5rem; align-items: center; flex-wrap: wrap; margin: .25rem .5rem .25rem 0; }
    select, input { font: inherit; padding: .3rem; border: 1px solid var(--muted); border-radius: 4px; }
    .filters { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
    .health.ok, .state.idle, .state.in_session { color: var(--ok); }
    .health.warning { color: var(--warn); }
    .health.critical, .state.offline, .state.faulted { color: var(--crit); }
    .state.revoked { color: var(--muted); text-decoration: line-through; }
    #flash { background: #ddf4ff; border: 1px solid var(--accent); padding: .5rem; border-radius: 6px; }
    #login-error { color: var(--crit); }
    svg text { font: 12px system-ui, sans-serif; fill: var(--fg); }
    @media (max-width: 820px) { .counts { grid-template-columns: repeat(2, 1fr); } table { font-size: .9rem; } }
    """

    static let js = """
    // Live updates (Server-Sent Events), and sorting/filtering of the devices table.
    (function () {
      function set(sel, value) { document.querySelectorAll(sel).forEach(function (e) { e.textContent = value; }); }
      var live = document.querySelector('[data-events]');
      if (live && window.EventSource) {
        var es = new EventSource(live.getAttribute('data-events'));
        es.addEventListener('signed_out', function () { es.close(); });
        es.onmessage = function (m) {
          var d = JSON.parse(m.data);
          Object.keys(d).forEach(function (k) { set('[data-live="' + k + '"]', d[k]); });
        };
      }
      if (document.body.dataset.page === 'overview' && window.EventSource) {
        var os = new EventSource('/events/overview');
        os.addEventListener('signed_out', function () { os.close(); });
        os.onmessage = function (m) {
          JSON.parse(m.data).forEach(function (s) {
            var sec = document.querySelector('section.site[data-site="' + s.site + '"]');
            if (!sec) return;
            Object.keys(s.counts).forEach(function (k) {
              var e = sec.querySelector('[data-count="' + k + '"]');
              if (e) e.textContent = s.counts[k];
            });
          });
        };
      }
      var table = document.getElementById('devices');
      if (table) {
        var body = table.tBodies[0];
        var dir = 1, last = null;
        table.querySelectorAll('th button[data-sort]').forEach(function (b) {
          b.addEventListener('click', function () {
            var col = b.getAttribute('data-sort');
            dir = (last === col) ? -dir : 1; last = col;
            var rows = Array.prototype.slice.call(body.rows);
            rows.sort(function (x, y) {
              var a = x.querySelector('[data-col="' + col + '"]').textContent, c = y.querySelector('[data-col="' + col + '"]').textContent;
              return a.localeCompare(c) * dir;
            });
            rows.forEach(function (r) { body.appendChild(r); });
          });
        });
        function filter() {
          var site = document.getElementById('filter-site').value;
          var state = document.getElementById('filter-state').value;
          var text = document.getElementById('filter-text').value.toLowerCase();
          Array.prototype.forEach.call(body.rows, function (r) {
            var ok = (!site || r.dataset.site === site) && (!state || r.dataset.state === state) && (!text || r.textContent.toLowerCase().indexOf(text) >= 0);
            r.hidden = !ok;
          });
        }
        ['filter-site', 'filter-state', 'filter-text'].forEach(function (id) {
          document.getElementById(id).addEventListener('input', filter);
        });
      }
    })();
    """
}

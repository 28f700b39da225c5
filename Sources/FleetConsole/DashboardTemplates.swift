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
    <link rel="icon" href="/static/icon.svg" type="image/svg+xml">
    <link rel="stylesheet" href="/static/app.css">
    <script src="/static/app.js" defer></script>
    </head>
    <body data-page="{{page}}">
    <a class="skip" href="#main">Skip to content</a>
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
    <main id="main" tabindex="-1">
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
    <div class="filters" role="search" aria-label="Filter the floor">
      <label for="floor-state">Show</label>
      <select id="floor-state"><option value="">every device</option><option value="in_session">in session</option><option value="idle">idle</option><option value="offline">offline</option><option value="faulted">faulted</option><option value="locked_out">locked out</option><option value="revoked">revoked</option></select>
      <label for="floor-text">Device or program</label>
      <input id="floor-text" type="search">
    </div>
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
      <h3 id="floor-h-{{site}}">Floor</h3>
      <ul class="floor" data-floor="{{site}}" aria-labelledby="floor-h-{{site}}">
      {{#tiles}}
        <li class="tile {{state}}" data-device="{{site}}/{{device}}" data-state="{{state}}">
          <a href="/devices/{{site}}/{{device}}" class="tile-name">{{device}}</a>
          <span class="tile-label" data-tile="label">{{label}}</span>
          <span data-tile="program">{{program}}</span>
          <span data-tile="left">{{left}}</span>
          <span class="tile-alert" data-tile="alert">{{alert}}</span>
        </li>
      {{/tiles}}
      </ul>
      <p class="floor-more" data-more="{{site}}"{{^more}} hidden{{/more}}><span>{{more}}</span> more devices: see <a href="/devices?site={{site}}">the devices list</a>.</p>
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
    <form id="device-filters" class="filters" method="get" action="/devices" role="search" aria-label="Filter devices">
      <label for="filter-site">Site</label>
      <select id="filter-site" name="site"><option value="">all</option>{{#siteIDs}}<option value="{{id}}"{{#selected}} selected{{/selected}}>{{id}}</option>{{/siteIDs}}</select>
      <label for="filter-state">State</label>
      <select id="filter-state" name="state"><option value="">all</option>{{#states}}<option{{#selected}} selected{{/selected}}>{{id}}</option>{{/states}}</select>
      <label for="filter-text">Search</label>
      <input id="filter-text" name="q" type="search" placeholder="device or program" value="{{text}}" maxlength="64">
      <input type="hidden" name="current_sort" value="{{sort}}">
      {{#limit}}<input type="hidden" name="limit" value="{{limit}}">{{/limit}}
      <button type="submit">Filter</button>
    </form>
    <p id="devices-range" role="status">{{range}}</p>
    <table id="devices">
      <thead><tr>
        {{#columns}}<th aria-sort="{{ariaSort}}"><button type="submit" form="device-filters" name="sort" value="{{next}}" data-sort="{{column}}">{{label}}</button></th>{{/columns}}
        <th>Config</th>
      </tr></thead>
      <tbody>
      {{#devices}}
      <tr data-device="{{site}}/{{device}}" data-site="{{site}}" data-state="{{state}}">
        <td data-col="site">{{site}}</td>
        <td data-col="device"><a href="/devices/{{site}}/{{device}}">{{device}}</a></td>
        <td data-col="state"><span class="state {{state}}">{{state}}</span></td>
        <td data-col="health"><span class="health {{health}}">{{health}}</span></td>
        <td data-col="program">{{program}}</td>
        <td data-col="last_seen">{{lastSeen}}</td>
        <td data-col="config">{{config}}</td>
      </tr>
      {{/devices}}
      </tbody>
    </table>
    <nav class="pages" aria-label="Pages of devices">
      {{#prev}}<a id="devices-prev" href="{{prev}}" rel="prev">Previous page</a>{{/prev}}
      {{#next}}<a id="devices-next" href="{{next}}" rel="next">Next page</a>{{/next}}
    </nav>
    """

    static let device = """
    <h1>{{site}}/{{device}}</h1>
    <p>State <strong class="state {{state}}">{{state}}</strong>, health <strong class="health {{health}}">{{health}}</strong>, agent {{agentVersion}}, epoch {{epoch}}. Times are the site's ({{timezone}}).</p>
    <section aria-labelledby="live-h" class="live" data-events="/events/devices/{{site}}/{{device}}">
      <h2 id="live-h">Live</h2>
      <dl class="telemetry">
        <div><dt>Session</dt><dd data-live="state">{{live.state}}</dd></div>
        <div><dt>Program</dt><dd data-live="program">{{live.program}}</dd></div>
        <div><dt>Elapsed</dt><dd data-live="elapsed">{{live.elapsed}}</dd></div>
        <div><dt>Step</dt><dd data-live="step">{{live.step}}</dd></div>
        <div><dt>Left in step</dt><dd data-live="step_left">{{live.step_left}}</dd></div>
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
      <h3 id="pressure-h">Pressure per zone (mmHg)</h3>
      <div id="pressure" class="chart">{{{chart}}}</div>
      <h3 id="steps-h">Steps so far</h3>
      <ol id="steps" class="steps" aria-labelledby="steps-h">{{#steps}}<li data-step="{{index}}"{{#current}} aria-current="step" class="current"{{/current}}>{{text}}</li>{{/steps}}</ol>
      {{^steps}}<p id="no-steps">No session steps seen yet.</p>{{/steps}}
    </section>
    <section aria-labelledby="troubles-h">
      <h2 id="troubles-h">Recent faults and aborts</h2>
      <ul id="troubles">{{#troubles}}<li>{{when}}: {{what}}</li>{{/troubles}}{{^troubles}}<li>none</li>{{/troubles}}</ul>
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
    <table id="alerts"><thead><tr><th>Severity</th><th>Site</th><th>Device</th><th>Type</th><th>Message</th><th>Raised</th><th>Acknowledged</th><th><span class="visually-hidden">Action</span></th></tr></thead>
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
    <section class="usage" data-site="{{site}}" aria-labelledby="usage-{{site}}"><h2 id="usage-{{site}}">{{site}}</h2>
    <p>Sessions: {{started}} started, {{completed}} completed, {{aborted}} aborted.</p>
    <div class="charts">{{{charts}}}</div>
    </section>
    {{/sites}}
    {{^sites}}<p>No usage reported yet.</p>{{/sites}}
    """

    static let rollouts = """
    <h1>Rollouts</h1>
    {{#canStart}}<p><a id="new-rollout" href="/rollouts/new">Start a new rollout</a></p>{{/canStart}}
    {{#rollouts}}
    <section class="rollout" data-rollout="{{id}}" aria-labelledby="rollout-{{id}}"><h2 id="rollout-{{id}}"><a href="/rollouts/{{id}}">{{name}}</a> <small>{{id}}</small></h2>
    <p>State <strong>{{state}}</strong>{{#reason}} ({{reason}}){{/reason}}; waves: {{waves}}; devices: {{counts}}.</p>
    {{#partial}}<p class="partial">Only your sites' devices are shown; this rollout also runs elsewhere, so only an admin of every site it spans can pause, resume or abort it.</p>{{/partial}}
    {{#canAdmin}}
    <form method="post" action="/ui/rollouts/{{id}}/pause"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Pause</button></form>
    <form method="post" action="/ui/rollouts/{{id}}/resume"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Resume</button></form>
    <form method="post" action="/ui/rollouts/{{id}}/abort"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Abort</button></form>
    {{/canAdmin}}
    <table><caption class="visually-hidden">Devices of {{name}}</caption><thead><tr><th>Wave</th><th>Device</th><th>State</th><th>Version</th><th>Error</th></tr></thead>
    <tbody>{{#devices}}<tr><td>{{wave}}</td><td>{{site}}/{{device}}</td><td>{{state}}</td><td>{{version}}</td><td>{{error}}</td></tr>{{/devices}}</tbody></table>
    </section>
    {{/rollouts}}
    {{^rollouts}}<p>No rollouts yet.</p>{{/rollouts}}
    """

    /// The site icon (a leg's outline in the accent colour), as SVG.
    static let icon = """
    <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0a58ca"/><path d="M12 4h6v14l6 6v4H12z" fill="#fff"/></svg>
    """

    static let rolloutNew = """
    <h1>New rollout</h1>
    <p>Nothing is sent to a device until the form passes the same checks as the API. <strong>Check</strong> shows the devices it targets, the waves, and every problem; <strong>Start rollout</strong> checks again and starts it.</p>
    {{#checked}}
    <section id="rollout-check" aria-labelledby="check-h" tabindex="-1">
      <h2 id="check-h">{{#ok}}Ready to start{{/ok}}{{^ok}}Not sent: fix these first{{/ok}}</h2>
      {{^ok}}<ul id="rollout-reasons" role="alert">{{#reasons}}<li data-key="{{key}}"><code>{{key}}</code>{{text}}</li>{{/reasons}}</ul>{{/ok}}
      <p id="rollout-preview"><span id="target-count">{{targets}}</span> devices match; waves: <span id="wave-sizes">{{#waves}}<span data-wave="{{index}}">{{size}}</span> {{/waves}}</span></p>
    </section>
    {{/checked}}
    <p id="live-preview" aria-live="polite"></p>
    <form id="rollout-form" method="post" action="/ui/rollouts/new">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <fieldset><legend>What</legend>
        <label for="ro-name">Name</label> <input id="ro-name" name="name" value="{{name}}" maxlength="200" required>
        <label for="ro-config">Configuration (YAML or JSON)</label>
        <textarea id="ro-config" name="config" rows="6" cols="50" spellcheck="false">{{config}}</textarea>
      </fieldset>
      <fieldset><legend>Targets</legend>
        {{#canAll}}<label><input type="checkbox" name="all"{{#all}} checked{{/all}}> every device of every site</label>{{/canAll}}
        {{#sites}}<label><input type="checkbox" name="site.{{id}}"{{#checked}} checked{{/checked}}> site {{id}} <small>({{timezone}})</small></label>{{/sites}}
        <label for="ro-devices">Devices (site/device, one a line)</label>
        <textarea id="ro-devices" name="devices" rows="3" cols="40" spellcheck="false">{{devices}}</textarea>
      </fieldset>
      <fieldset><legend>Waves</legend>
        <label for="ro-canary">Canary devices</label> <input id="ro-canary" name="canary" value="{{canary}}" inputmode="numeric" size="5">
        <label><input type="radio" name="wave_mode" value="percentages"{{#percentMode}} checked{{/percentMode}}> cumulative percentages</label>
        <label for="ro-percentages">Percentages</label> <input id="ro-percentages" name="percentages" value="{{percentages}}" size="14">
        <label><input type="radio" name="wave_mode" value="factor"{{#factorMode}} checked{{/factorMode}}> each wave a factor of the last</label>
        <label for="ro-factor">Factor</label> <input id="ro-factor" name="factor" value="{{factor}}" inputmode="decimal" size="5">
        <label for="ro-bake">Bake (s)</label> <input id="ro-bake" name="bake_s" value="{{bake_s}}" inputmode="decimal" size="6">
        <label for="ro-timeout">Apply timeout (s)</label> <input id="ro-timeout" name="apply_timeout_s" value="{{apply_timeout_s}}" inputmode="decimal" size="6">
      </fieldset>
      <fieldset><legend>Error threshold</legend>
        <label for="ro-th-percent">Percent failed</label> <input id="ro-th-percent" name="threshold_percent" value="{{threshold_percent}}" inputmode="decimal" size="5">
        <label for="ro-th-min">Once this many are done</label> <input id="ro-th-min" name="threshold_min" value="{{threshold_min}}" inputmode="numeric" size="5">
        <label for="ro-th-action">Then</label>
        <select id="ro-th-action" name="threshold_action"><option value="pause">pause</option><option value="abort"{{#thresholdAbort}} selected{{/thresholdAbort}}>abort</option></select>
        <label for="ro-on-abort">On abort</label>
        <select id="ro-on-abort" name="on_abort"><option value="rollback">roll back</option><option value="leave"{{#onAbortLeave}} selected{{/onAbortLeave}}>leave as is</option></select>
      </fieldset>
      <fieldset><legend>Maintenance window (each site's time zone)</legend>
        {{#days}}<label><input type="checkbox" name="day.{{id}}"{{#checked}} checked{{/checked}}> {{id}}</label>{{/days}}
        <label for="ro-start">From (HH:MM)</label> <input id="ro-start" name="window_start" value="{{window_start}}" size="5">
        <label for="ro-end">To (HH:MM)</label> <input id="ro-end" name="window_end" value="{{window_end}}" size="5">
      </fieldset>
      <button type="submit" name="intent" value="check">Check</button>
      <button type="submit" name="intent" value="start">Start rollout</button>
    </form>
    """

    static let rollout = """
    <h1>Rollout {{name}} <small>{{id}}</small></h1>
    <section class="live rollout-live" data-rollout-events="/events/rollouts/{{id}}" aria-labelledby="ro-state-h">
      <h2 id="ro-state-h">State</h2>
      <dl class="telemetry">
        <div><dt>State</dt><dd data-ro="state">{{state}}</dd></div>
        <div><dt>Reason</dt><dd data-ro="reason">{{reason}}</dd></div>
        <div><dt>Devices</dt><dd data-ro="counts">{{counts}}</dd></div>
        <div><dt>Error threshold</dt><dd data-ro="threshold">{{threshold}}</dd></div>
      </dl>
      {{#partial}}<p class="partial">Only your sites' devices are shown; only an admin of every site it spans can pause, resume or abort it.</p>{{/partial}}
      {{#canAdmin}}
      <form method="post" action="/ui/rollouts/{{id}}/pause"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Pause</button></form>
      <form method="post" action="/ui/rollouts/{{id}}/resume"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Resume</button></form>
      <form method="post" action="/ui/rollouts/{{id}}/abort"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Abort</button></form>
      {{/canAdmin}}
      <h2 id="ro-waves-h">Waves</h2>
      <table id="ro-waves" aria-labelledby="ro-waves-h"><thead><tr><th>Wave</th><th>Devices</th><th>State</th></tr></thead>
      <tbody>{{#waves}}<tr data-wave="{{index}}"{{#current}} aria-current="step"{{/current}}><td>{{index}}</td><td>{{size}}</td><td>{{state}}</td></tr>{{/waves}}</tbody></table>
      <h2 id="ro-devices-h">Devices</h2>
      <table id="ro-devices" aria-labelledby="ro-devices-h"><thead><tr><th>Wave</th><th>Device</th><th>State</th><th>Version</th><th>Error</th></tr></thead>
      <tbody>{{#devices}}<tr data-device="{{site}}/{{device}}"><td>{{wave}}</td><td>{{site}}/{{device}}</td><td>{{state}}</td><td>{{version}}</td><td>{{error}}</td></tr>{{/devices}}</tbody></table>
    </section>
    """
}

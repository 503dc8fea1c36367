/* citypulse maps: deck.gl (global `deck`, from 00_deckgl.min.js) driven by Dash.
 *
 * Static geometry (lake, zones, segments, sensor positions) is fetched ONCE per page from
 * /dash-static/; each refresh only hands the small state (band indexes, densities, arcs,
 * offline sensors, alerts) to render(), which calls deck.setProps().  Alert markers are
 * HTML elements pulsing with CSS, so the canvas is not redrawn for the animation.
 */
(function () {
  "use strict";
  var CENTRE = { longitude: 121.929, latitude: 30.899 };
  var cp = (window.citypulse = window.citypulse || {});
  cp.maps = cp.maps || {};
  cp.lastState = cp.lastState || {};
  cp.rendered = cp.rendered || {};
  cp.errors = cp.errors || [];
  var staticPromise = null;

  if (typeof window.deck === "undefined") {
    cp.errors.push("deck.gl is missing: run scripts/build-assets.sh (make deps)");
    console.warn("citypulse: deck.gl asset missing; run scripts/build-assets.sh");
  }

  function loadStatic() {
    if (!staticPromise) {
      staticPromise = Promise.all([
        fetch("/dash-static/city.json", { credentials: "same-origin" }).then(function (r) {
          return r.json();
        }),
        fetch("/dash-static/sensors.bin", { credentials: "same-origin" }).then(function (r) {
          return r.arrayBuffer();
        }),
      ]).then(function (res) {
        var city = res[0];
        city.sensorXY = new Float32Array(res[1]);
        city.sensorCount = city.sensorXY.length / 2;
        return city;
      });
    }
    return staticPromise;
  }
  cp.loadStatic = loadStatic;

  function getMap(mapId, opts) {
    var el = document.getElementById(mapId);
    if (!el) return null;
    var m = cp.maps[mapId];
    if (m && m.el === el) return m;
    if (m) {
      try { m.deck.finalize(); } catch (e) { /* old page gone */ }
    }
    el.innerHTML = "";
    var markers = document.createElement("div");
    markers.className = "cp-markers";
    m = { el: el, state: null, city: null, markers: markers, view: null };
    // fit the city disc (~10.4 km across) to the map's height: zoom 12.35 fits ~850 px
    var fit = 12.35 + Math.log2(Math.max(200, el.clientHeight || 850) / 850);
    m.view = Object.assign({ zoom: opts.zoom || fit, pitch: 0, bearing: 0 }, CENTRE);
    m.deck = new deck.Deck({
      parent: el,
      initialViewState: m.view,
      controller: !!opts.interactive,
      useDevicePixels: false,
      layers: [],
      onViewStateChange: function (p) { m.view = p.viewState; return p.viewState; },
      onAfterRender: function () {
        placeMarkers(m);
        if (m.city && m.state && !cp.rendered[mapId]) cp.rendered[mapId] = performance.now();
      },
      getTooltip: function (info) {
        if (!info.object || !info.layer) return null;
        var o = info.object;
        if (info.layer.id === "segments") return o.name + " (" + o.id + ")";
        if (info.layer.id === "zones") return o.name;
        return null;
      },
    });
    el.appendChild(markers);
    cp.maps[mapId] = m;
    return m;
  }

  function rgba(c, a) { return [c[0], c[1], c[2], a]; }

  function layers(m) {
    var city = m.city, st = m.state;
    var grey = [110, 120, 135, 200];
    var segColour = function (d) {
      var b = st.seg[d._i];
      return b >= 0 ? rgba(st.colours[b], 255) : grey;
    };
    return [
      new deck.PolygonLayer({
        id: "zones", data: city.zones, getPolygon: function (d) { return d.polygon; },
        getFillColor: function (d) {
          var c = st.zone_rgb ? st.zone_rgb[d._i] : null;
          return c || [24, 32, 48, 255];
        },
        getLineColor: [70, 85, 110, 255], lineWidthUnits: "pixels", getLineWidth: 1,
        stroked: true, filled: true, pickable: true,
        updateTriggers: { getFillColor: st.at },
      }),
      new deck.PolygonLayer({
        id: "lake", data: (city.water || [city.lake]).map(function (p) { return { polygon: p }; }),
        getPolygon: function (d) { return d.polygon; },
        getFillColor: [22, 78, 140, 255], getLineColor: [90, 170, 230, 255],
        lineWidthUnits: "pixels", getLineWidth: 2, stroked: true,
      }),
      new deck.ScatterplotLayer({
        id: "sensors",
        data: { length: city.sensorCount, attributes: { getPosition: { value: city.sensorXY, size: 2 } } },
        getFillColor: [200, 220, 255, 70], radiusUnits: "pixels", getRadius: 1.2,
        radiusMinPixels: 1, pickable: false,
      }),
      new deck.PathLayer({
        id: "segments", data: city.segments, getPath: function (d) { return d.path; },
        getColor: segColour, widthUnits: "pixels",
        getWidth: function (d) { return 2 + d.lanes; }, capRounded: true, pickable: true,
        updateTriggers: { getColor: st.at },
      }),
      new deck.ArcLayer({
        id: "od", data: st.od || [],
        getSourcePosition: function (d) { return d[0]; },
        getTargetPosition: function (d) { return d[1]; },
        getSourceColor: [255, 190, 11, 220], getTargetColor: [131, 56, 236, 220],
        getWidth: function (d) { return Math.min(8, 1 + Math.sqrt(d[2])); },
        widthUnits: "pixels", getHeight: 0.5,
      }),
      new deck.ScatterplotLayer({
        id: "offline", data: st.offline || [], getPosition: function (d) { return d; },
        getFillColor: [60, 60, 60, 255], getLineColor: [255, 80, 80, 255], stroked: true,
        radiusUnits: "pixels", getRadius: 3, lineWidthUnits: "pixels", getLineWidth: 1,
      }),
    ];
  }

  function placeMarkers(m) {
    if (!m.state) return;
    var vps = m.deck.getViewports ? m.deck.getViewports() : [];
    if (!vps.length) return;
    var vp = vps[0];
    var alerts = m.state.alerts || [];
    var box = m.markers;
    while (box.children.length > alerts.length) box.removeChild(box.lastChild);
    for (var i = 0; i < alerts.length; i++) {
      var a = alerts[i];
      var d = box.children[i];
      if (!d) {
        d = document.createElement("div");
        d.className = "cp-pulse";
        box.appendChild(d);
      }
      var p = vp.project([a[0], a[1]]);
      d.style.left = p[0] + "px";
      d.style.top = p[1] + "px";
      d.style.setProperty("--c", "rgb(" + a[2].join(",") + ")");
      d.title = "alert " + a[3];
    }
  }

  function index(city) {
    if (city._indexed) return;
    city.zones.forEach(function (z, i) { z._i = i; });
    city.segments.forEach(function (s, i) { s._i = i; });
    city._indexed = true;
  }

  cp.render = function (mapId, state, opts) {
    if (!state || typeof window.deck === "undefined") return;
    var m = getMap(mapId, opts || {});
    if (!m) return;
    cp.lastState[mapId] = state;
    m.state = state;
    loadStatic().then(function (city) {
      index(city);
      m.city = city;
      if (!m.fitted && city.centre && !(opts || {}).zoom) {
        // centre on the city and fit its extent (12.35 fits the 10.4 km demo city on 850 px)
        var h = Math.max(200, m.el.clientHeight || 850);
        var zoom = 12.35 + Math.log2(10400 / Math.max(500, city.extent_m || 10400)) +
          Math.log2(h / 850);
        m.view = Object.assign({}, m.view, { longitude: city.centre[0],
          latitude: city.centre[1], zoom: zoom });
        m.deck.setProps({ initialViewState: m.view });
      }
      m.fitted = true;
      if (m.state !== state) return; // a newer state arrived meanwhile
      m.deck.setProps({ layers: layers(m) });
    }).catch(function (e) {
      cp.errors.push(String(e));
      console.warn("citypulse: static geometry failed", e);
    });
  };

  cp.flyTo = function (mapId, lon, lat, zoom) {
    var m = cp.maps[mapId];
    if (!m || lon === null || lon === undefined) return;
    var view = Object.assign({}, m.view, {
      longitude: lon, latitude: lat, zoom: zoom || 14.5,
      transitionDuration: 1200, transitionInterpolator: new deck.FlyToInterpolator(),
    });
    m.view = view;
    m.deck.setProps({ initialViewState: view });
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    citypulse: {
      render: function (state, mapId, interactive) {
        cp.render(mapId, state, { interactive: !!interactive });
        return state ? state.at : "";
      },
      fly: function (target, mapId) {
        if (target) cp.flyTo(mapId, target.lon, target.lat);
        return target ? String(target.lon) + "," + String(target.lat) : "";
      },
    },
  });
})();

"""Scratch."""


def test_smoke(sta_env, http):
    for path in ["", "/Things", "/Things?$top=2&$expand=Datastreams($top=2;$expand=Observations($top=1;$orderby=phenomenonTime desc))",
                 "/Datastreams?$top=3", "/Sensors", "/ObservedProperties", "/Locations?$top=2",
                 "/HistoricalLocations?$top=2", "/FeaturesOfInterest?$top=3", "/Observations?$top=3",
                 f"/Datastreams({sta_env.day_sensor * 8})/Observations?$top=2&$count=true&$filter=phenomenonTime ge 2020-01-01T00:00:00Z and phenomenonTime lt 2100-01-01T00:00:00Z",
                 "/Things?$filter=startswith(name,'air') and properties/kind eq 'air'&$top=2"]:
        r = http.get(sta_env.url + path)
        print(path, r.status_code, r.text[:1500])
        assert r.status_code == 200

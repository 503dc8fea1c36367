import json

import polars as pl
import pytest

from ingest.registry import RegistryError, read_file


def test_csv_with_extras(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("sensor_id,kind,lon,lat,gateway_id,zone\ns1,traffic,121.9,30.9,,z1\ns2,fire,121.8,30.8,gw1,z2\n")
    recs = read_file(p)
    assert [(r.sensor_id, r.kind, r.gateway_id) for r in recs] == [("s1", "traffic", None), ("s2", "fire", "gw1")]
    assert json.loads(recs[0].props) == {"zone": "z1"}


def test_parquet_like_simulator_deployment(tmp_path):
    p = tmp_path / "d.parquet"
    pl.DataFrame({"sensor_id": ["a", "b"], "kind": ["air", "noise"], "lon": [121.9, 121.95],
                  "lat": [30.9, 30.91], "gateway_id": ["g1", None], "segment": [3, None],
                  "interval_s": [60.0, 60.0]}).write_parquet(p)
    recs = read_file(p)
    assert [r.gateway_id for r in recs] == ["g1", None]
    assert json.loads(recs[0].props) == {"segment": 3, "interval_s": 60.0}


def test_geojson(tmp_path):
    p = tmp_path / "d.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.9, 30.9]},
         "properties": {"sensor_id": "w1", "kind": "water", "gateway_id": "g"}}]}))
    (r,) = read_file(p)
    assert (r.sensor_id, r.kind, r.lon, r.lat, r.gateway_id) == ("w1", "water", 121.9, 30.9, "g")


@pytest.mark.parametrize(("body", "match"), [
    ("sensor_id,kind,lon\ns1,traffic,1\n", "missing column.*lat"),
    ("sensor_id,kind,lon,lat\ns1,traffic,1,2\ns2,volcano,1,2\n", "row 2, column 'kind'"),
    ("sensor_id,kind,lon,lat\ns1,traffic,east,2\n", "row 1, column 'lon'"),
    ("sensor_id,kind,lon,lat\ns1,traffic,1,95\n", "row 1, column 'lat'"),
    ("sensor_id,kind,lon,lat\n,traffic,1,2\n", "row 1, column 'sensor_id'"),
    ("sensor_id,kind,lon,lat\na/b,traffic,1,2\n", "row 1, column 'sensor_id'"),
])
def test_errors_name_row_and_column(tmp_path, body, match):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(RegistryError, match=match):
        read_file(p)

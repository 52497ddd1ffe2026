import requests

from tests.servers import Server


def test_version_check_answers_with_api_version_header(moorage: Server) -> None:
    response = requests.get(f"{moorage.url}/v2/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert response.json() == {}

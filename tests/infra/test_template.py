"""template.yaml: cfn-lint, `sam validate`, and what the SAM transform makes of it, checked offline.

The transform runs in the aws-sam-cli venv (`make sam-venv`; its boto3 pin conflicts with moto's), so these
tests see the CloudFormation that would be deployed: routes, integrations, IAM, throttling, the table.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn import Evaluator, load_template
from tests.infra.dockerbuild import commands, expand, instructions
from tts_service.aws import handler
from tts_service.config import Settings
from tts_service.observability import tracing

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
FUNCTIONS_DOCKERFILE = REPO / "functions" / "Dockerfile"
SAM_VENV = Path(os.environ.get("SAM_VENV", REPO / ".venv-sam"))
OFFLINE_AWS_ENV = {
    "SAM_CLI_TELEMETRY": "0",
    "AWS_ACCESS_KEY_ID": "offline",
    "AWS_SECRET_ACCESS_KEY": "offline",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

FUNCTIONS = {"TtsFunction": "tts", "VoicesFunction": "voices", "ChatFunction": "chat", "StreamFunction": "stream"}
HTTP_ROUTES = {
    "POST /tts": "TtsFunction",
    "GET /healthz": "TtsFunction",
    "POST /v1/audio/speech": "TtsFunction",
    "GET /v1/models": "TtsFunction",
    "GET /v1/models/{model_id}": "TtsFunction",
    "GET /v1/audio/voices": "TtsFunction",
    "GET /voices": "VoicesFunction",
    "GET /voices/detail": "VoicesFunction",
    "GET /health": "VoicesFunction",
    "POST /chat": "ChatFunction",
    "POST /voice-chat": "ChatFunction",
    "GET /llm/provider": "ChatFunction",
    "GET /conversations": "ChatFunction",
    "GET /conversations/{id}": "ChatFunction",
    "DELETE /conversations/{id}": "ChatFunction",
    "POST /ws-ticket": "VoicesFunction",
    "GET /client-config": "VoicesFunction",
}
# Variables the functions read that are not Settings fields: Powertools' own and OpenTelemetry's standard ones.
EXTERNAL_ENV = {
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_TRACE_DISABLED",
    "POWERTOOLS_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
}


def sam_python() -> Path:
    python = SAM_VENV / "bin" / "python"
    assert python.exists(), f"{python} is missing: `make sam-venv` creates the aws-sam-cli venv"
    return python


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """The transformed template (plain CloudFormation), as SAM would hand it to CloudFormation."""
    out = subprocess.run(
        [str(sam_python()), str(REPO / "tests/infra/tools/sam_transform.py"), str(TEMPLATE)],
        env={**os.environ, **OFFLINE_AWS_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


TEMPLATES = [TEMPLATE, REPO / "infra" / "lambda-web-adapter" / "template.yaml"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_cfn_lint_passes(path: Path) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    run = subprocess.run([str(cfn_lint), str(path)], capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_sam_validate_with_lint_passes_offline(path: Path) -> None:
    run = subprocess.run(
        [str(SAM_VENV / "bin/sam"), "validate", "--lint", "--region", "us-east-1", "--template-file", str(path)],
        env={**os.environ, **OFFLINE_AWS_ENV},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is a valid SAM Template" in run.stdout + run.stderr


def integration_function(uri: Any) -> str:
    """The function an integration invokes; always through its live alias, so a gradual deployment shifts all
    traffic (and a rollback all of it)."""
    match = re.search(r"\$\{(\w+)Aliaslive\}|\"Ref\": \"(\w+)Aliaslive\"", json.dumps(uri))
    assert match, uri
    return match.group(1) or match.group(2)


def test_every_http_route_reaches_its_function_also_under_api(cfn: dict[str, Any]) -> None:
    paths = cfn["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    routes = {
        f"{method.upper()} {path}": integration_function(op["x-amazon-apigateway-integration"]["uri"])
        for path, ops in paths.items()
        for method, op in ops.items()
    }
    expected = {**HTTP_ROUTES, **{f"{k.split()[0]} /api{k.split()[1]}": v for k, v in HTTP_ROUTES.items()}}
    assert routes == expected
    # payload 2.0: the events Mangum and the tests speak
    assert {
        op["x-amazon-apigateway-integration"]["payloadFormatVersion"] for ops in paths.values() for op in ops.values()
    } == {"2.0"}


def test_throttling_comes_from_rate_limit_per_minute(cfn: dict[str, Any], template: dict[str, Any]) -> None:
    settings = cfn["Resources"]["HttpApiApiGatewayDefaultStage"]["Properties"]["DefaultRouteSettings"]
    ws_settings = cfn["Resources"]["WebSocketStage"]["Properties"]["DefaultRouteSettings"]
    for route_settings in (settings, ws_settings):
        assert route_settings["ThrottlingRateLimit"] == {
            "Fn::FindInMap": ["RateLimits", {"Ref": "RateLimitPerMinute"}, "PerSecond"]
        }
        assert route_settings["ThrottlingBurstLimit"] == {"Ref": "RateLimitBurst"}
    # every allowed per-minute value has its per-second row, and the arithmetic is right
    allowed = template["Parameters"]["RateLimitPerMinute"]["AllowedValues"]
    rows = template["Mappings"]["RateLimits"]
    assert sorted(int(v) for v in allowed) == sorted(int(k) for k in rows)
    for per_minute, row in rows.items():
        assert float(row["PerSecond"]) == pytest.approx(int(per_minute) / 60)


@pytest.mark.parametrize(
    ("origins", "expected"),
    [("", None), ("https://a.example,https://b.example", ["https://a.example", "https://b.example"])],
)
def test_cors_comes_from_its_parameter(template: dict[str, Any], origins: str, expected: list[str] | None) -> None:
    cors = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    evaluator = Evaluator(template, {"CorsAllowedOrigins": origins})
    result = evaluator.eval({"x": cors})
    assert (result.get("x") or {}).get("AllowOrigins") == expected
    assert re.fullmatch(template["Parameters"]["CorsAllowedOrigins"]["AllowedPattern"], origins)


def test_websocket_api_routes_to_the_stream_function(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"] for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    for props in routes.values():
        assert props["ApiId"] == {"Ref": "WebSocketApi"}
        assert props["Target"] == {"Fn::Sub": "integrations/${StreamIntegration}"}
    assert res["WebSocketApi"]["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert integration_function(res["StreamIntegration"]["Properties"]["IntegrationUri"]) == "StreamFunction"
    permission = res["StreamInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "StreamFunctionAliaslive"}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert set(res["WebSocketDeployment"]["DependsOn"]) == {"ConnectRoute", "DisconnectRoute", "DefaultRoute"}


def statements(cfn: dict[str, Any], role: str) -> list[dict[str, Any]]:
    found = []
    for policy in cfn["Resources"][role]["Properties"].get("Policies", []):
        if "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


def test_stream_function_may_post_to_connections_and_use_its_table(cfn: dict[str, Any]) -> None:
    stmts = statements(cfn, "StreamFunctionRole")
    manage = [s for s in stmts if s["Action"] == "execute-api:ManageConnections"]
    assert len(manage) == 1
    assert "${WebSocketApi}" in json.dumps(manage[0]["Resource"])
    dynamo = [s for s in stmts if "dynamodb:PutItem" in s["Action"]]
    assert dynamo
    assert '"StreamTable"' in json.dumps(dynamo[0]["Resource"])
    env = cfn["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STREAM_TABLE_NAME"] == {"Ref": "StreamTable"}
    # no other function may post to WebSocket clients
    for role in ("TtsFunctionRole", "VoicesFunctionRole", "ChatFunctionRole"):
        assert "ManageConnections" not in json.dumps(statements(cfn, role))


def test_connection_table_schema_and_ttl(template: dict[str, Any]) -> None:
    table = template["Resources"]["StreamTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "connection_id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "connection_id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize(("logical_id", "name"), FUNCTIONS.items())
def test_each_function_is_an_image_built_from_the_functions_dockerfile(
    template: dict[str, Any], logical_id: str, name: str
) -> None:
    resource = template["Resources"][logical_id]
    assert resource["Properties"]["PackageType"] == "Image"
    meta = resource["Metadata"]
    assert meta["DockerContext"] == "."
    assert meta["DockerTag"]
    dockerfile = REPO / meta["DockerContext"] / meta["Dockerfile"]
    assert dockerfile == FUNCTIONS_DOCKERFILE
    # one Dockerfile for all four: the build argument picks the entry the image runs
    assert meta["DockerBuildArgs"]["FUNCTION"] == name
    assert (REPO / "functions" / name / "app.py").is_file()
    text = dockerfile.read_text()
    assert "COPY functions/${FUNCTION}/app.py ${LAMBDA_TASK_ROOT}/" in text
    assert 'CMD ["app.handler"]' in text
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M), "every function builds FROM the shared Piper base"
    # every argument the Dockerfile declares is one the template passes (an unset one would expand to nothing)
    declared = {args.partition("=")[0] for keyword, args in instructions(dockerfile) if keyword == "ARG"}
    assert declared == set(meta["DockerBuildArgs"])


def test_sam_cli_builds_each_function_from_the_one_dockerfile_naming_it() -> None:
    # WHEN SAM CLI resolves the functions' build metadata, as `sam build` does
    out = subprocess.run(
        [str(sam_python()), str(REPO / "tests/infra/tools/sam_images.py"), str(TEMPLATE), "ImageTag=dev"],
        env={**os.environ, **OFFLINE_AWS_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # THEN every function builds functions/Dockerfile, told which function it is
    built = {
        name: (meta["Dockerfile"], meta["DockerBuildArgs"]["FUNCTION"]) for name, meta in json.loads(out.stdout).items()
    }
    assert built == {logical_id: ("functions/Dockerfile", name) for logical_id, name in FUNCTIONS.items()}


@pytest.mark.parametrize("logical_id", FUNCTIONS)
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "OpenAIApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:openai-AbCdEf",
            "QdrantApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:qdrant-AbCdEf",
            "QdrantUrl": "https://qdrant.example:6333",
            "LlmProvider": "ollama",
            "OllamaBaseUrl": "http://ollama.internal:11434",
            "CorsAllowedOrigins": "https://app.example",
            "VoicesS3Uri": "s3://voices-bucket/v1/",
            "Tracing": "Active",
            "PublicBaseUrl": "https://tts.example.com",
            "OtelExporterEndpoint": "https://otel.example.com:4318",
        },
    ],
    ids=["defaults", "everything-set"],
)
def test_parameters_reach_the_settings_class(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, logical_id: str, overrides: dict[str, str]
) -> None:
    # GIVEN the environment CloudFormation would give the function
    env = Evaluator(template, overrides).function_env(logical_id)

    # THEN every variable is a Settings field (or Powertools' own), and Settings accepts the values
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) - fields - EXTERNAL_ENV == set()
    for name in list(os.environ):
        if name in fields:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.rate_limit_enabled is False
    # The app's own timeout (504 JSON) fires before Lambda cuts the function off.
    timeout = float(Evaluator(template, overrides).eval(template["Resources"][logical_id]["Properties"]["Timeout"]))
    assert settings.request_timeout_secs < timeout
    if overrides:
        assert settings.openai_api_key_secret == overrides["OpenAIApiKeySecretArn"]
        assert settings.voices_s3_uri == "s3://voices-bucket/v1/"
        assert settings.llm_provider == "ollama"
        assert settings.cors_allowed_origins == "https://app.example"
        assert env["POWERTOOLS_TRACE_DISABLED"] == "false"
        assert settings.public_base_url == "https://tts.example.com"
        # X-Ray and OpenTelemetry together, each from its own parameter
        assert tracing.wanted(env) is True
    else:
        assert settings.openai_api_key_secret is None
        assert settings.voices_s3_uri is None
        assert tracing.wanted(env) is False  # OpenTelemetry is off unless its endpoint is given


def test_secrets_are_never_plain_parameters_or_environment(template: dict[str, Any]) -> None:
    for name, param in template["Parameters"].items():
        if re.search(r"key|secret|token|password", name, re.I):
            assert name.endswith("SecretArn"), f"{name}: pass a secret's ARN, never the secret"
            assert param["AllowedPattern"].startswith("^$|^arn:aws")
    env_names = set(Evaluator(template).function_env("ChatFunction")) | set(
        Evaluator(template).function_env("StreamFunction")
    )
    assert not env_names & {"OPENAI_API_KEY", "QDRANT_API_KEY"}
    assert "{{resolve:" not in TEMPLATE.read_text()


def test_secret_and_s3_policies_follow_their_parameters(cfn: dict[str, Any]) -> None:
    chat = json.dumps(cfn["Resources"]["ChatFunctionRole"]["Properties"]["Policies"])
    assert "HasOpenAISecret" in chat
    assert "OpenAIApiKeySecretArn" in chat
    assert "secretsmanager:GetSecretValue" in chat
    assert "HasQdrantSecret" in chat
    assert "HasVoicesS3" in chat
    tts = json.dumps(cfn["Resources"]["TtsFunctionRole"]["Properties"]["Policies"])
    assert "OpenAIApiKeySecretArn" not in tts  # the tts function never needs the LLM key
    for role in ("TtsFunctionRole", "VoicesFunctionRole", "ChatFunctionRole", "StreamFunctionRole"):
        assert "HasApiKeys" in json.dumps(cfn["Resources"][role]["Properties"]["Policies"])  # every entry checks keys


def test_memory_and_timeouts_fit_the_api_limits(template: dict[str, Any]) -> None:
    ev = Evaluator(template)
    props = {name: template["Resources"][name]["Properties"] for name in FUNCTIONS}
    # The HTTP API gives up at 30 s: HTTP functions stop before it.
    for name in ("TtsFunction", "VoicesFunction", "ChatFunction"):
        assert int(ev.eval(props[name]["Timeout"])) <= 29
    # The stream function posts after API Gateway's 29 s route timeout, so it may run longer.
    assert 29 < int(ev.eval(props["StreamFunction"]["Timeout"])) <= 900
    memory = {name: int(ev.eval(props[name]["MemorySize"])) for name in FUNCTIONS}
    # Synthesizing functions get at least one full vCPU (1,769 MB); the voices function loads no model.
    assert min(memory["TtsFunction"], memory["ChatFunction"], memory["StreamFunction"]) >= 1769
    assert memory["VoicesFunction"] < memory["TtsFunction"]


def test_outputs_give_both_api_urls(template: dict[str, Any]) -> None:
    ev = Evaluator(template)
    outputs = {name: ev.eval(o["Value"]) for name, o in template["Outputs"].items()}
    assert outputs["HttpApiUrl"] == "https://<HttpApi>.execute-api.us-east-1.amazonaws.com/"
    assert outputs["WebSocketUrl"] == "wss://<WebSocketApi>.execute-api.us-east-1.amazonaws.com/prod"


def test_samconfig_sits_beside_the_template() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_image_repos"] is True
    template = load_template(TEMPLATE)
    for env in config.values():
        if not isinstance(env, dict):
            continue  # `version`
        overrides = env.get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        for pair in overrides.split():
            name, value = pair.split("=", 1)
            param = template["Parameters"][name]
            if "AllowedValues" in param:
                assert value in [str(v) for v in param["AllowedValues"]], pair


def test_synthesizing_functions_keep_the_split_graphs_baked_into_their_images(template: dict[str, Any]) -> None:
    # Each image splits the voices at build time into STREAM_CACHE_DIR under /var/task; the template must not
    # point it elsewhere, or every cold start would split again. voices loads no voice: its image bakes nothing.
    ev = Evaluator(template)
    steps = instructions(FUNCTIONS_DOCKERFILE)
    env = [pair for keyword, args in steps if keyword == "ENV" for pair in args.split()]
    assert "STREAM_CACHE_DIR=${LAMBDA_TASK_ROOT}/streaming-cache" in env
    for name, function in FUNCTIONS.items():
        build_args = {k: str(v) for k, v in template["Resources"][name]["Metadata"]["DockerBuildArgs"].items()}
        runs = [argv for keyword, args in steps if keyword == "RUN" for argv in commands(expand(args, build_args))]
        baked = any("get_engine().bake()" in " ".join(argv) for argv in runs)
        assert baked == (function != "voices"), (function, runs)
        assert "STREAM_CACHE_DIR" not in ev.function_env(name)


def test_iam_grants_only_what_the_code_calls(cfn: dict[str, Any]) -> None:
    # The connection store and tickets use single-item calls; a role able to Scan or Query could read every
    # connection's text and every unredeemed ticket at once.
    stream = [s for s in statements(cfn, "StreamFunctionRole") if "dynamodb" in json.dumps(s["Action"])]
    assert len(stream) == 1
    assert sorted(stream[0]["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    voices = [s for s in statements(cfn, "VoicesFunctionRole") if "dynamodb" in json.dumps(s["Action"])]
    assert [s["Action"] for s in voices] == ["dynamodb:PutItem"]  # it issues tickets, it never reads them
    for role in ("TtsFunctionRole", "VoicesFunctionRole", "ChatFunctionRole", "StreamFunctionRole"):
        text = json.dumps(statements(cfn, role))
        for broad in ("Scan", "Query", "Batch", "dynamodb:*", "s3:ListBucket", "s3:*"):
            assert broad not in text, (role, broad)


@pytest.mark.parametrize(
    ("uri", "resource"),
    [
        ("s3://voices-bucket/v1/", "arn:aws:s3:::voices-bucket/v1/*"),
        ("s3://b.example/a/b/", "arn:aws:s3:::b.example/a/b/*"),
    ],
)
def test_s3_reads_are_limited_to_the_voices_prefix(template: dict[str, Any], uri: str, resource: str) -> None:
    assert re.fullmatch(template["Parameters"]["VoicesS3Uri"]["AllowedPattern"], uri)
    evaluator = Evaluator(template, {"VoicesS3Uri": uri})
    for logical_id in FUNCTIONS:
        policies = evaluator.eval(template["Resources"][logical_id]["Properties"]["Policies"])
        s3 = [s for p in policies if p for s in p.get("Statement", []) if "s3:" in json.dumps(s["Action"])]
        assert s3 == [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": resource}], logical_id
    # Without the final slash the grant would also cover "v1-private/..." (or, for a bare bucket name, other
    # buckets whose names start with it): such values are refused.
    for loose in ("s3://voices-bucket/v1", "s3://voices-bucket"):
        assert not re.fullmatch(template["Parameters"]["VoicesS3Uri"]["AllowedPattern"], loose)


def test_the_stream_function_is_bounded(template: dict[str, Any]) -> None:
    ev = Evaluator(template)
    props = template["Resources"]["StreamFunction"]["Properties"]
    assert 1 <= int(ev.eval(props["ReservedConcurrentExecutions"])) <= 100
    env = ev.function_env("StreamFunction")
    limit = int(env["MAX_TEXT_CHARS"])
    assert limit < Settings.model_fields["max_text_chars"].default
    assert int(env["STREAM_MAX_PENDING_CHARS"]) == limit
    assert int(env["MAX_MESSAGE_CHARS"]) == limit


def test_the_chat_function_purges_expired_turns_on_a_schedule(cfn: dict[str, Any]) -> None:
    rules = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    (rule,) = [r for r in rules if "ChatFunction" in json.dumps(r["Properties"]["Targets"])]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    permissions = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"]
    assert any(p["Principal"] == "events.amazonaws.com" and "ChatFunction" in json.dumps(p) for p in permissions)


def test_qdrant_must_be_https_unless_allowed(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["QdrantUrl"]["AllowedPattern"]
    assert all(re.fullmatch(pattern, url) for url in ("", "https://q.example:6333", "http://10.0.0.5:6333"))
    assert not re.fullmatch(pattern, "q.example:6333")
    for name in FUNCTIONS:
        assert Evaluator(template).function_env(name)["QDRANT_ALLOW_HTTP"] == "false"
        assert Evaluator(template, {"QdrantAllowHttp": "true"}).function_env(name)["QDRANT_ALLOW_HTTP"] == "true"


ALARMS = {"ErrorRateAlarm", "LatencyAlarm", "ThrottlesAlarm"}


def test_every_function_deploys_gradually_through_its_live_alias_and_rolls_back_on_alarm(
    cfn: dict[str, Any], template: dict[str, Any]
) -> None:
    res = cfn["Resources"]
    groups = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::CodeDeploy::DeploymentGroup"}
    assert len(groups) == len(FUNCTIONS)
    for props in groups.values():
        assert {a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"]} == ALARMS
        assert props["AlarmConfiguration"]["Enabled"] is True
        assert "DEPLOYMENT_STOP_ON_ALARM" in props["AutoRollbackConfiguration"]["Events"]
        # SAM resolves the parameter (here its default) into CodeDeploy's predefined configuration
        assert props["DeploymentConfigName"]["Fn::Sub"][0] == "CodeDeployDefault.Lambda${ConfigName}"
        assert (
            props["DeploymentConfigName"]["Fn::Sub"][1]["ConfigName"]
            == template["Parameters"]["DeploymentStrategy"]["Default"]
        )
    for logical_id in FUNCTIONS:
        alias = res[f"{logical_id}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias"
        assert alias["Properties"]["Name"] == "live"
        assert "CodeDeployLambdaAliasUpdate" in alias["UpdatePolicy"]
    # canary or linear by default, and only AWS's predefined configurations may be named
    strategy = template["Parameters"]["DeploymentStrategy"]
    assert strategy["Default"].startswith(("Canary", "Linear"))
    assert all(
        re.fullmatch(r"(Canary\d+Percent\d+Minutes|Linear\d+PercentEvery\d+Minutes?|AllAtOnce)", v)
        for v in strategy["AllowedValues"]
    )
    # the stream function keeps its reserved concurrency, shared by all its versions
    assert res["StreamFunction"]["Properties"]["ReservedConcurrentExecutions"] == {"Ref": "StreamReservedConcurrency"}


def test_the_alarms_watch_5xx_rate_p95_latency_and_throttles_on_metrics_that_exist(template: dict[str, Any]) -> None:
    res = template["Resources"]
    # 5xx rate: the EMF metric every function emits (0/1 per invocation, so its average is the rate)
    errors = res["ErrorRateAlarm"]["Properties"]
    (query,) = errors["Metrics"]
    assert query["Expression"] == f"SELECT AVG(ServerError) FROM SCHEMA({handler.DEFAULT_NAMESPACE}, route, service)"
    assert Evaluator(template).function_env("TtsFunction")["POWERTOOLS_METRICS_NAMESPACE"] == handler.DEFAULT_NAMESPACE
    assert 'name="ServerError"' in Path(handler.__file__).read_text()
    assert errors["Threshold"] == {"Ref": "ErrorRateThreshold"}
    # p95 latency of the synthesizing function, on its live alias
    latency = res["LatencyAlarm"]["Properties"]
    assert latency["ExtendedStatistic"] == "p95"
    assert latency["MetricName"] == "Duration"
    assert {"Name": "Resource", "Value": {"Fn::Sub": "${TtsFunction}:live"}} in latency["Dimensions"]
    assert latency["Threshold"] == {"Ref": "LatencyP95Ms"}
    # throttles of every function, summed
    throttles = res["ThrottlesAlarm"]["Properties"]["Metrics"]
    watched = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in throttles if "MetricStat" in m}
    assert watched == set(FUNCTIONS)
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in throttles if "MetricStat" in m} == {"Throttles"}
    for name in ALARMS:
        assert res[name]["Properties"]["TreatMissingData"] == "notBreaching"  # no traffic is no reason to roll back


def test_the_dashboard_is_json_naming_resources_of_this_stack(template: dict[str, Any]) -> None:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([\w:.]+)\}", body))
    known = set(template["Resources"]) | set(template["Parameters"]) | {"AWS::Region", "AWS::StackName"}
    assert {n.split(".")[0] for n in names} <= known
    dashboard = json.loads(re.sub(r"\$\{[\w:.]+\}", "x", body))
    titles = " | ".join(w["properties"]["title"].lower() for w in dashboard["widgets"])
    for wanted in (
        "requests and errors",
        "latency",
        "duration p95",
        "throttles",
        "concurrency",
        "real-time factor",
        "websocket",
        "alarms",
    ):
        assert wanted in titles, wanted
    alarm_widget = next(w for w in dashboard["widgets"] if w["type"] == "alarm")
    assert len(alarm_widget["properties"]["alarms"]) == len(ALARMS)


def test_both_api_stages_write_access_logs(cfn: dict[str, Any], template: dict[str, Any]) -> None:
    res = cfn["Resources"]
    http = res["HttpApiApiGatewayDefaultStage"]["Properties"]["AccessLogSettings"]
    ws = res["WebSocketStage"]["Properties"]["AccessLogSettings"]
    for settings, group in ((http, "HttpApiAccessLogs"), (ws, "WebSocketApiAccessLogs")):
        assert settings["DestinationArn"] == {"Fn::GetAtt": [group, "Arn"]}
        assert res[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        fields = json.loads(re.sub(r"\s+", "", settings["Format"]))
        assert {"requestId", "status", "ip"} <= set(fields)
        assert "$context.requestId" in fields.values()
    # WebSocket APIs log through the account's CloudWatch role: the stack sets it unless told the account has one,
    # and the stage waits for it
    assert template["Resources"]["ApiGatewayAccount"]["Condition"] == "ManagesApiGatewayAccount"
    description = template["Resources"]["WebSocketStage"]["Properties"]["Description"]
    assert "${ApiGatewayAccount}" in json.dumps(description)
    role = template["Resources"]["ApiGatewayLogsRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}

"""Read a CloudFormation/SAM template with its tags and evaluate the intrinsics the tests need, offline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain data, `!Ref x` as `{"Ref": "x"}` (cfn-lint's own loader)."""
    template: dict[str, Any] = cfn_yaml.load(str(path))
    return template


class Evaluator:
    """Resolve intrinsics against parameter values (defaults unless overridden); resources become `<Name>`."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, str] | None = None) -> None:
        self.template = template
        self.params = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
        self.params.update(overrides or {})
        self.params.update({"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"})
        self.params.update({"AWS::StackName": "tts-service", "AWS::URLSuffix": "amazonaws.com"})

    def condition(self, name: str) -> bool:
        return bool(self.eval(self.template["Conditions"][name]))

    def eval(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.eval(item) for item in node if item != {"Ref": "AWS::NoValue"}]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {k: self.eval(v) for k, v in node.items()}
        ((key, arg),) = node.items()
        if key == "Ref":
            return None if arg == "AWS::NoValue" else self.params.get(arg, f"<{arg}>")
        if key == "Fn::If":
            name, yes, no = arg
            return self.eval(yes if self.condition(name) else no)
        if key == "Fn::Equals":
            left, right = (self.eval(a) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.eval(arg[0])
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Join":
            sep, items = arg
            return sep.join(str(i) for i in self.eval(items))
        if key == "Fn::Split":
            sep, text = arg
            return str(self.eval(text)).split(sep)
        if key == "Fn::Select":
            index, items = arg
            return self.eval(items)[int(index)]
        if key == "Fn::FindInMap":
            name, top, second = (self.eval(a) for a in arg)
            return self.template["Mappings"][name][str(top)][second]
        if key == "Fn::GetAtt":
            return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self.eval(arg[1]))
            values = {**self.params, **local}
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(values.get(m.group(1), f"<{m.group(1)}>")), text)
        return {key: self.eval(arg)}

    def function_env(self, logical_id: str) -> dict[str, str]:
        """Globals.Function.Environment merged with the function's own, as SAM merges them, then evaluated."""
        merged = dict(self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        props = self.template["Resources"][logical_id]["Properties"]
        merged.update(props.get("Environment", {}).get("Variables", {}))
        return {name: str(self.eval(value)) for name, value in merged.items()}

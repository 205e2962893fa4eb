"""Smoke: the stack set is complete and every bastion is online (the precondition of all else)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.aws.session import aws_call

pytestmark = [pytest.mark.smoke, pytest.mark.gate]


def test_every_stack_of_the_set_is_complete(deployment: Any, target: Any) -> None:
    for stack in deployment.stacks:
        with aws_call(f"DescribeStacks {stack.name}", stack.deployed_in):
            found = target.sessions.client("cloudformation", stack.deployed_in).describe_stacks(
                StackName=stack.name
            )["Stacks"][0]
        assert found["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), (
            f"{stack.name} in {stack.deployed_in} is {found['StackStatus']}"
        )


def test_every_region_has_an_online_bastion_in_each_availability_zone(
    deployment: Any, bastions: Any
) -> None:
    for region in deployment.regions:
        mine = [b for b in bastions if b.region == region.name]
        assert sorted(b.instance_id for b in mine) == sorted(region.bastion_ids)
        assert len({b.availability_zone for b in mine}) == 2, f"{region.name}: bastions share an AZ"

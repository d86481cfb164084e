"""botocore's service models: the protocol specification of everything we parse and serialize."""

from __future__ import annotations

from functools import cache

import botocore.session
from botocore.model import OperationModel, ServiceModel


@cache
def service_model(name: str) -> ServiceModel:
    """The botocore model of an AWS service ("ec2", "s3"), loaded once per process."""
    loader = botocore.session.get_session().get_component("data_loader")
    return ServiceModel(loader.load_service_model(name, "service-2"), service_name=name)


@cache
def operation_model(service: str, operation: str) -> OperationModel:
    return service_model(service).operation_model(operation)


def has_operation(service: str, operation: str) -> bool:
    return operation in service_model(service).operation_names

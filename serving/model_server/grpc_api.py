"""gRPC side of the dev model server: PredictionService.{Predict,GetModelMetadata} and
ModelService.GetModelStatus, with TF Serving's status codes and messages.

Classify, Regress, MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mrl_keras.serving.backends.errors import BackendError, FailedPrecondition, InvalidInput
from mrl_keras.serving.backends.local_model import check_inputs
from mrl_keras.serving.backends.tf_serving_requests import (
    SIGNATURE_DEF_FIELD,
    ndarray_to_tensor_proto,
    tensor_proto_to_ndarray,
)
from mrl_keras.serving.model_server.manager import VersionManager


def _version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _abort(context: grpc.ServicerContext, error: BackendError):
    code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
    context.abort(code, error.message)


def _bad_signature(name: str) -> BackendError:
    return FailedPrecondition(f'Serving signature key "{name}" not found.')


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: VersionManager, *, max_batch_size=None, latency_s=0.0):
        self.manager = manager
        self.max_batch_size = max_batch_size
        self.latency_s = latency_s

    def Predict(self, request: predict_pb2.PredictRequest, context):
        try:
            response = self._predict(request, context)
        except BackendError as e:
            _abort(context, e)
        return response

    def _predict(self, request, context) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        version, label = _version_choice(request.model_spec)

        def decode(spec):
            if len(request.inputs) != len(spec.inputs):
                check_inputs(spec, {k: None for k in request.inputs})  # raises the size error
            arrays = {}
            for alias in sorted(spec.inputs):
                if alias not in request.inputs:
                    raise InvalidInput(f"Signature input alias: {alias} not found in request")
                try:
                    arrays[alias] = tensor_proto_to_ndarray(request.inputs[alias])
                except Exception as e:
                    raise InvalidInput(f"tensor parsing error: {alias}") from e
            return arrays

        outputs, served, signature = self.manager.predict(
            request.model_spec.name,
            version,
            label,
            request.model_spec.signature_name,
            decode,
            bad_signature=_bad_signature,
            max_batch_size=self.max_batch_size,
            latency_s=self.latency_s,
            time_left=context.time_remaining,
        )
        wanted = list(request.output_filter) or sorted(outputs)
        for alias in wanted:
            if alias not in outputs:
                raise InvalidInput(
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(outputs))}}}."
                )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = served
        response.model_spec.signature_name = signature
        for alias in wanted:
            response.outputs[alias].CopyFrom(
                ndarray_to_tensor_proto(outputs[alias], as_content=False)
            )
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        try:
            if not request.HasField("model_spec"):
                raise InvalidInput("Missing ModelSpec")
            if not request.metadata_field:
                raise InvalidInput(
                    "GetModelMetadataRequest must specify at least one metadata_field"
                )
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise InvalidInput(f"Metadata field {field} is not supported")
            version, label = _version_choice(request.model_spec)
            served, defs = self.manager.signature_defs(request.model_spec.name, version, label)
        except BackendError as e:
            _abort(context, e)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = served
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: VersionManager):
        self.manager = manager

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        from tensorflow.core.protobuf import error_codes_pb2

        try:
            if not request.HasField("model_spec"):
                raise InvalidInput("Missing ModelSpec")
            version, _ = _version_choice(request.model_spec)
            versions = self.manager.status(request.model_spec.name, version)
        except BackendError as e:
            _abort(context, e)
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in versions:
            entry = response.model_version_status.add()
            entry.version = v.version
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(v.state)
            entry.status.error_code = error_codes_pb2.Code.Value(v.error_code)
            entry.status.error_message = v.error_message
        return response


def add_servicers(server: grpc.Server, manager: VersionManager, **predict_options) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, **predict_options), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)

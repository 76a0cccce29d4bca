"""Starting RetrainWorkflow on Temporal for a recorded trigger, once per workflow id.

The id is derived from the evidence (model, trigger, window), and the start refuses a duplicate
id for good (REJECT_DUPLICATE), so a repeated trigger, a retried start or a second monitoring
replica can never start a second saga. Until a worker serves the task queue the workflow waits
in Temporal; the attempt says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from services.runtime.settings import Settings

WORKFLOW = "RetrainWorkflow"
MODEL_NAME = SearchAttributeKey.for_keyword("ModelName")
MODEL_VERSION = SearchAttributeKey.for_int("ModelVersion")
STAGE = SearchAttributeKey.for_keyword("GovernanceStage")


@dataclass(frozen=True)
class StartResult:
    outcome: str  # started | already_started
    run_id: str | None
    workers_polling: int
    detail: str


class RetrainStarter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._client = await Client.connect(self.settings.temporal_address,
                                                namespace=self.settings.temporal_namespace)
        return self._client

    async def start(self, workflow_id: str, model: str, version: int, payload: dict) -> StartResult:
        """Raises when Temporal cannot be reached: the trigger stays pending and is retried."""
        client = await self.client()
        queue = self.settings.temporal_task_queue
        attributes = TypedSearchAttributes([
            SearchAttributePair(MODEL_NAME, model), SearchAttributePair(MODEL_VERSION, version),
            SearchAttributePair(STAGE, "retrain"),
        ])
        try:
            handle = await client.start_workflow(
                WORKFLOW, payload, id=workflow_id, task_queue=queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=attributes,
            )
            outcome, run_id = "started", handle.result_run_id
        except WorkflowAlreadyStartedError as exc:
            outcome, run_id = "already_started", exc.run_id
        workers = await self.workers(queue)
        if workers:
            detail = f"{WORKFLOW} {workflow_id} {outcome.replace('_', ' ')} on task queue {queue!r}"
        else:
            detail = (f"{WORKFLOW} {workflow_id} {outcome.replace('_', ' ')}, but no worker polls task "
                      f"queue {queue!r}: it waits in Temporal until a governance worker runs")
        return StartResult(outcome, run_id, workers, detail)

    async def workers(self, queue: str) -> int:
        client = await self.client()
        response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=self.settings.temporal_namespace, task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ))
        return len(response.pollers)

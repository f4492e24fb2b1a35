package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow the kstatus convention,
// so `kubectl wait --for=condition=Ready`, Flux and Argo CD health checks
// understand a StreamPipeline without custom code.
const (
	// ConditionReady is True when the workers run the current spec and are available.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator is moving toward the spec.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the operator can't make progress without a
	// change from a person (a missing Secret, a name conflict, a failed rollout).
	ConditionStalled = "Stalled"
	// ConditionTopicsReady is True when the retry and dead-letter topics exist
	// with the topic policy.
	ConditionTopicsReady = "TopicsReady"
	// ConditionLagCritical is True when lag exceeds spec.scaling.lagCriticalSeconds
	// of ingest.
	ConditionLagCritical = "LagCritical"
	// ConditionDeadLettersPresent is True when the dead-letter topic holds records.
	ConditionDeadLettersPresent = "DeadLettersPresent"
	// ConditionConsumerStalled is True when the group has lag and is not moving:
	// partitions whose committed offset stands still (PartitionsStalled), or no
	// live members at all (GroupStopped).
	ConditionConsumerStalled = "ConsumerStalled"
	// ConditionShareGroupReady is True when the cluster runs share groups and
	// the pipeline's share group has the configs Sluice sets (groupType Share
	// only; a consumer pipeline does not have it).
	ConditionShareGroupReady = "ShareGroupReady"
	// ConditionConsumerGroupReady is True when the cluster runs KIP-848
	// consumer groups and the pipeline's group has the session timeout and
	// heartbeat interval the spec sets (consumer.groupProtocol Consumer only).
	ConditionConsumerGroupReady = "ConsumerGroupReady"
)

// Condition reasons, in CamelCase as the Kubernetes API conventions ask.
const (
	ReasonSucceeded   = "Succeeded"
	ReasonProgressing = "Progressing"
	ReasonRollingOut  = "RollingOut"
	ReasonSuspended   = "Suspended"
	ReasonResumed     = "Resumed"
	// ReasonRewinding: a StreamReplay of mode Rewind holds the workers at 0
	// while it sets the consumer group's offsets.
	ReasonRewinding          = "Rewinding"
	ReasonSecretNotFound     = "SecretNotFound"
	ReasonSecretKeyNotFound  = "SecretKeyNotFound"
	ReasonResourceConflict   = "ResourceConflict"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonRolloutFailed      = "ProgressDeadlineExceeded"
	ReasonWorkerImageMissing = "WorkerImageMissing"
	// ReasonInvalidWorkerConfig: the spec renders into a worker config the
	// worker would refuse.
	ReasonInvalidWorkerConfig = "InvalidWorkerConfig"
	// ReasonClaimConflict: a pipeline created earlier uses the same consumer
	// group or retry/dead-letter topic on the same Kafka cluster.
	ReasonClaimConflict = "ClaimConflict"

	// Kafka: topics and connectivity.
	ReasonTopicsProvisioned        = "TopicsProvisioned"
	ReasonPartitionsNotDecreased   = "PartitionsNotDecreased"
	ReasonSourceTopicNotFound      = "SourceTopicNotFound"
	ReasonKafkaUnreachable         = "KafkaUnreachable"
	ReasonKafkaClientConfig        = "KafkaClientConfigInvalid"
	ReasonKafkaAuthFailed          = "KafkaAuthorizationFailed"
	ReasonInvalidReplicationFactor = "InvalidReplicationFactor"
	ReasonInvalidTopicConfig       = "InvalidTopicConfig"
	ReasonTopicProvisioningFailed  = "TopicProvisioningFailed"
	ReasonStartingOffsetsFailed    = "StartingOffsetsFailed"
	ReasonTopicDeletionFailed      = "TopicDeletionFailed"
	// Share groups (groupType Share).
	ReasonShareGroupConfigured    = "ShareGroupConfigured"
	ReasonShareGroupsUnsupported  = "ShareGroupsUnsupported"
	ReasonInvalidShareGroupConfig = "InvalidShareGroupConfig"
	ReasonShareGroupConfigFailed  = "ShareGroupConfigFailed"
	// KIP-848 consumer groups (consumer.groupProtocol Consumer).
	ReasonConsumerGroupConfigured    = "ConsumerGroupConfigured"
	ReasonConsumerGroupsUnsupported  = "ConsumerGroupsUnsupported"
	ReasonInvalidConsumerGroupConfig = "InvalidConsumerGroupConfig"
	ReasonConsumerGroupConfigFailed  = "ConsumerGroupConfigFailed"
	// ReasonStaticMembersNotRemoved: the group kept static members whose
	// pods are gone, and removing them failed.
	ReasonStaticMembersNotRemoved = "StaticMembersNotRemoved"
	// ReasonDeleting: the pipeline is being deleted.
	ReasonDeleting = "Deleting"

	// Lag and consumer health.
	ReasonLagWithinBudget    = "LagWithinBudget"
	ReasonLagAboveBudget     = "LagAboveBudget"
	ReasonNotMeasured        = "NotMeasured"
	ReasonNoDeadLetters      = "NoDeadLetters"
	ReasonDeadLetters        = "DeadLetters"
	ReasonDeadLettersGrowing = "DeadLettersGrowing"
	ReasonConsuming          = "Consuming"
	ReasonPartitionsStalled  = "PartitionsStalled"
	ReasonGroupStopped       = "GroupStopped"
)

// Event reasons (besides the condition reasons above).
const (
	EventWorkloadCreated = "WorkloadCreated"
	EventConfigChanged   = "ConfigChanged"
	EventScaled          = "Scaled"
	EventSuspended       = "Suspended"
	EventResumed         = "Resumed"
	EventReady           = "Ready"
	EventReconcileError  = "ReconcileError"
	EventTopicsCreated   = "TopicsCreated"
	EventTopicsConverged = "TopicsConverged"
	EventTopicsDeleted   = "TopicsDeleted"
	// EventTopicsKept: a deleted pipeline kept a topic another pipeline uses.
	EventTopicsKept = "TopicsKept"
	// EventTopicsLeftBehind: a deleted pipeline with deletionPolicy Delete let
	// go without deleting its topics (credentials gone, access denied, Kafka
	// unreachable past the deletion timeout).
	EventTopicsLeftBehind = "TopicsLeftBehind"
	// EventStaticMembersRemoved: the operator removed from the group the
	// static members whose pods a scale-down or a switch to Dynamic
	// membership took away.
	EventStaticMembersRemoved = "StaticMembersRemoved"
	// EventStartingOffsetsCommitted: the operator fixed a startFrom Latest
	// group's start at the end of the topic.
	EventStartingOffsetsCommitted = "StartingOffsetsCommitted"
)

// Labels and annotations Sluice sets on what it creates.
const (
	// LabelPipeline carries the owning pipeline's name on every object and pod.
	LabelPipeline = "streaming.sluice.dev/pipeline"
	// AnnotationConfigHash on the pod template changes whenever the rendered
	// worker configuration does, so a spec change rolls the pods.
	AnnotationConfigHash = "streaming.sluice.dev/config-hash"
	// FinalizerTopics holds a pipeline with deletionPolicy Delete until its retry
	// and dead-letter topics are deleted.
	FinalizerTopics = "streaming.sluice.dev/topics"
)

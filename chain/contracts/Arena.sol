// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

/// @title Arena: entry-fee escrow and payouts for RLFC Arena matches.
/// @notice Users hold an ETH balance inside the contract. The operator locks entry fees
/// from those balances into a match's escrow, then either settles the match (payouts
/// credited to balances, the remainder to a treasury) or refunds every locked fee.
/// Payouts are credited, never pushed, so a settlement cannot be blocked by a payee;
/// each owner pulls their own balance out with `withdraw`.
contract Arena {
    /// Life cycle of a match escrow. `None` is the zero value of an unused match id.
    enum MatchStatus {
        None,
        Open,
        Settled,
        Refunded
    }

    /// One locked entry fee. Packed into a single storage slot.
    struct Entry {
        address user;
        uint96 fee;
    }

    /// A match's escrow. `held` is what the escrow still holds (zero once closed).
    struct Escrow {
        uint128 held;
        MatchStatus status;
    }

    /// The account that may change the operator.
    address public immutable admin;
    /// The account that may lock, settle and refund.
    address public operator;
    /// Each account's withdrawable balance, in wei.
    mapping(address => uint256) public balanceOf;
    /// Each match's escrow.
    mapping(uint256 => Escrow) public escrowOf;
    /// The result root stored by a match's settlement.
    mapping(uint256 => bytes32) public resultRootOf;
    mapping(uint256 => Entry[]) private entries;

    event Deposited(address indexed user, uint256 amount, uint256 balance);
    event Withdrawn(address indexed user, uint256 amount, uint256 balance);
    event FeeLocked(uint256 indexed matchId, address indexed user, uint256 fee, uint256 held);
    event MatchSettled(
        uint256 indexed matchId, bytes32 resultRoot, uint256 paidOut, address indexed treasury, uint256 toTreasury
    );
    event MatchRefunded(uint256 indexed matchId, uint256 refunded, uint256 entries);
    event OperatorChanged(address indexed previous, address indexed current);

    error NotAdmin(address caller);
    error NotOperator(address caller);
    error ZeroAmount();
    error ZeroAddress();
    error InsufficientBalance(address account, uint256 available, uint256 required);
    error FeeTooLarge(uint256 fee);
    error MatchNotOpen(uint256 matchId, MatchStatus status);
    error MatchClosed(uint256 matchId, MatchStatus status);
    error LengthMismatch(uint256 payees, uint256 amounts);
    error PayoutExceedsPot(uint256 matchId, uint256 pot);
    error TransferFailed(address to, uint256 amount);

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    constructor(address initialOperator) {
        if (initialOperator == address(0)) revert ZeroAddress();
        admin = msg.sender;
        operator = initialOperator;
        emit OperatorChanged(address(0), initialOperator);
    }

    /// @notice Adds the sent ETH to the sender's balance.
    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        uint256 balance = balanceOf[msg.sender] + msg.value;
        balanceOf[msg.sender] = balance;
        emit Deposited(msg.sender, msg.value, balance);
    }

    /// @notice Sends `amount` of the sender's own balance back to the sender.
    function withdraw(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 available = balanceOf[msg.sender];
        if (available < amount) revert InsufficientBalance(msg.sender, available, amount);
        uint256 balance = available - amount;
        balanceOf[msg.sender] = balance;
        emit Withdrawn(msg.sender, amount, balance);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    /// @notice Moves `fee` from `user`'s balance into the escrow of `matchId`.
    function lockFee(uint256 matchId, address user, uint256 fee) external onlyOperator {
        if (fee == 0) revert ZeroAmount();
        if (fee > type(uint96).max) revert FeeTooLarge(fee);
        Escrow storage escrow = escrowOf[matchId];
        MatchStatus status = escrow.status;
        if (status == MatchStatus.Settled || status == MatchStatus.Refunded) revert MatchClosed(matchId, status);
        uint256 available = balanceOf[user];
        if (available < fee) revert InsufficientBalance(user, available, fee);
        balanceOf[user] = available - fee;
        uint128 held = escrow.held + uint128(fee);
        escrow.held = held;
        escrow.status = MatchStatus.Open;
        entries[matchId].push(Entry(user, uint96(fee)));
        emit FeeLocked(matchId, user, fee, held);
    }

    /// @notice Pays `amounts[i]` to `payees[i]` out of the pot of `matchId`, credits the
    /// remainder to `treasury`, stores `resultRoot` and closes the match.
    function settle(
        uint256 matchId,
        address[] calldata payees,
        uint256[] calldata amounts,
        address treasury,
        bytes32 resultRoot
    ) external onlyOperator {
        if (payees.length != amounts.length) revert LengthMismatch(payees.length, amounts.length);
        if (treasury == address(0)) revert ZeroAddress();
        Escrow storage escrow = escrowOf[matchId];
        if (escrow.status != MatchStatus.Open) revert MatchNotOpen(matchId, escrow.status);
        uint256 pot = escrow.held;
        uint256 paid;
        for (uint256 i; i < payees.length; ++i) {
            address payee = payees[i];
            if (payee == address(0)) revert ZeroAddress();
            uint256 amount = amounts[i];
            // `paid <= pot` holds here, so the subtraction cannot underflow and the
            // comparison rejects any amount that would overflow the running sum.
            if (amount > pot - paid) revert PayoutExceedsPot(matchId, pot);
            paid += amount;
            balanceOf[payee] += amount;
        }
        uint256 remainder = pot - paid;
        if (remainder != 0) balanceOf[treasury] += remainder;
        escrow.held = 0;
        escrow.status = MatchStatus.Settled;
        resultRootOf[matchId] = resultRoot;
        emit MatchSettled(matchId, resultRoot, paid, treasury, remainder);
    }

    /// @notice Returns every fee locked in `matchId` to the balance it came from.
    function refund(uint256 matchId) external onlyOperator {
        Escrow storage escrow = escrowOf[matchId];
        if (escrow.status != MatchStatus.Open) revert MatchNotOpen(matchId, escrow.status);
        uint256 pot = escrow.held;
        escrow.held = 0;
        escrow.status = MatchStatus.Refunded;
        Entry[] storage locked = entries[matchId];
        uint256 count = locked.length;
        for (uint256 i; i < count; ++i) {
            Entry memory entry = locked[i];
            balanceOf[entry.user] += entry.fee;
        }
        emit MatchRefunded(matchId, pot, count);
    }

    /// @notice Replaces the operator. Only the admin may do this.
    function setOperator(address newOperator) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        if (newOperator == address(0)) revert ZeroAddress();
        emit OperatorChanged(operator, newOperator);
        operator = newOperator;
    }

    /// @notice How many fees are locked in `matchId`.
    function entryCount(uint256 matchId) external view returns (uint256) {
        return entries[matchId].length;
    }

    /// @notice The `index`-th fee locked in `matchId`.
    function entryAt(uint256 matchId, uint256 index) external view returns (address user, uint256 fee) {
        Entry memory entry = entries[matchId][index];
        return (entry.user, entry.fee);
    }
}
